"""The run key (batch): its default from the clock and its validation.
"""

from __future__ import annotations

import re
from datetime import datetime

from cbm_luigi.errors import ConfigError

_BATCH_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


def default_batch(granularity: str, now: datetime | None = None) -> str:
    """The batch key used when ``--batch-id`` is not given: ``2026-11-25`` (day) or ``2026-11-25T14`` (hour)."""
    now = now or datetime.now()
    return now.strftime("%Y-%m-%dT%H") if granularity == "hour" else now.strftime("%Y-%m-%d")


def validate_batch(batch: str) -> str:
    """Check a batch key: letters, digits, ``-``, ``_``, ``.``, ``:`` (``T`` is a letter), at most 64."""
    if not _BATCH_RE.match(batch):
        raise ConfigError(
            f"batch {batch!r} is not valid: use letters, digits, '-', '_', '.', ':' (e.g. 2026-11-25T14)"
        )
    return batch
