"""Luigi parameters shared by the tasks (mode, the run key).
"""

from __future__ import annotations

from typing import Any

import luigi

from cbm_luigi.errors import ConfigError
from cbm_luigi.model.batch import default_batch, validate_batch
from cbm_luigi.tasks.context import settings

MODES = ("full", "incremental")




class BatchParameter(luigi.Parameter):
    """The run key: letters, digits, ``-_.:``; empty means today (or this hour) per ``batch_granularity``.

    The tasks call it ``batch_id`` (``--batch-id`` on the ``luigi`` command line): a bare ``--batch`` is refused
    by Luigi's first argument pass as an ambiguous abbreviation of its own ``--batch-email-*`` options."""

    def normalize(self, x: Any) -> str:
        if x is None or str(x).strip() == "":
            return default_batch(settings().batch_granularity)
        try:
            return validate_batch(str(x).strip())
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
