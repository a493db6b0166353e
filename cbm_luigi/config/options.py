"""Typed options of the operations sections: ``[cbm_ops]``, ``[cbm_quality]``, ``[cbm_alerts]``.

One reader for every option outside ``[cbm]``: environment ``CBM_<KEY>`` (or the variable named) > ``.env`` >
luigi.cfg section > default; a value that does not parse is a ConfigError naming the setting and the value.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import luigi.configuration

from cbm_luigi.config.settings import load_dotenv_once
from cbm_luigi.errors import ConfigError

T = TypeVar("T")


def cbm_option(key: str, default: T, cast: Callable[[str], T] | None = None) -> T:
    """An operations option: environment ``CBM_<KEY>`` > luigi.cfg ``[cbm_ops] <key>`` > ``default``.

    Used for the options of retries, the breaker, logs and progress (``retry_attempts``, ``log_retention_days``...);
    a value that does not parse is a ConfigError naming the setting.
    """



    load_dotenv_once()
    env = f"CBM_{key.upper()}"
    raw = os.environ.get(env)
    if raw is None or raw.strip() == "":
        raw = luigi.configuration.get_config().get("cbm_ops", key, None)
    if raw is None or str(raw).strip() == "":
        return default
    conv: Callable[[str], Any] = cast or type(default)
    if conv is bool:
        conv = _parse_bool
    try:
        value: Any = conv(str(raw).strip())
        return value
    except (TypeError, ValueError):
        raise ConfigError(f"{env} (luigi.cfg [cbm_ops] {key}) = {raw!r} is not valid; expected a "
                          f"{type(default).__name__} like {default!r}") from None


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on", "y"):
        return True
    if low in ("0", "false", "no", "off", "n"):
        return False
    raise ValueError(text)
