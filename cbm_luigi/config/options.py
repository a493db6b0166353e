"""Typed options of the operations sections: ``[cbm_ops]`` and ``[cbm_quality]``; one reader for every option.

Every option outside ``[cbm]`` is read by :func:`read_option`: environment variable (``CBM_<KEY>`` unless named)
> ``.env`` > the luigi.cfg section > the default, ``${NAME}`` expanded, parsed to the default's type (one
boolean parser for the whole package: :func:`parse_bool`).  A value that does not parse is a ConfigError naming
the variable, the luigi.cfg option and the value.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import luigi.configuration

from cbm_luigi.config.settings import expand_env, load_dotenv_once
from cbm_luigi.errors import ConfigError
from cbm_luigi.model.values import parse_bool

T = TypeVar("T")


def config_text(section: str, *options: str) -> str:
    """A raw luigi.cfg value under any of ``options`` (dash or underscore spellings), or ''."""
    cfg = luigi.configuration.get_config()
    for opt in options:
        for name in {opt, opt.replace("_", "-"), opt.replace("-", "_")}:
            if cfg.has_option(section, name):
                return str(cfg.get(section, name) or "").strip()
    return ""


def read_option(section: str, key: str, default: T, *, env: str | None = None,
                cast: Callable[[str], T] | None = None) -> T:
    """``env`` (default ``CBM_<KEY>``) > ``.env`` > luigi.cfg ``[section] key`` > ``default``, typed like the
    default (or by ``cast``)."""
    load_dotenv_once()
    env = env or f"CBM_{key.upper()}"
    raw: str | None = os.environ.get(env)
    if raw is None or raw.strip() == "":
        raw = config_text(section, key) or None
    if raw is None or str(raw).strip() == "":
        return default
    text = expand_env(str(raw).strip(), env)
    conv: Callable[[str], Any] = cast or type(default)
    if conv is bool:
        conv = parse_bool
    try:
        value: Any = conv(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{env} (luigi.cfg [{section}] {key}) = {raw!r} is not valid; expected a "
                          f"{type(default).__name__} like {default!r}") from None
    return value


def cbm_option(key: str, default: T, cast: Callable[[str], T] | None = None) -> T:
    """An operations option (``[cbm_ops]``): retries, the breaker, logs, progress, the DuckDB writer lock."""
    return read_option("cbm_ops", key, default, cast=cast)


#: Every ``[cbm_ops]`` option and its default (the calls of :func:`cbm_option` give the same default: a test
#: checks it), so that a bad value is refused before a run starts (:func:`check_ops_options`), not by the first task
#: that reads it.
OPS_DEFAULTS: dict[str, Any] = {
    "retry_attempts": 3, "retry_delay": 2.0, "retry_max_delay": 60.0, "breaker_probe_timeout": 10,
    "breaker_reset_seconds": 300.0, "progress_count": True, "target_lock_timeout": 3600.0,
    "log_retention_days": 30, "log_max_files": 500, "log_max_bytes": 100 * 1024 * 1024, "log_backup_count": 5,
    "night_report": True, "isolate_extracts": True, "other_workers_timeout": 21600.0, "keep_target_open": 0.5,
}


def check_ops_options() -> None:
    """Read every ``[cbm_ops]`` option once: a value that does not parse is a ConfigError naming it (exit 2)."""
    for key, default in OPS_DEFAULTS.items():
        cbm_option(key, default)


#: ``[cbm_quality]``: option -> (environment variable, default)
QUALITY_OPTIONS = {
    "reports_dir": ("CBM_REPORTS_DIR", "reports"),
    "dq_dir": ("CBM_DQ_DIR", "config/data_quality"),
    "validate_memory": ("CBM_VALIDATE_MEMORY", "1GB"),
}


def quality_option(key: str) -> str:
    """A ``[cbm_quality]`` setting (validation, profiling, data-quality rules, reports)."""
    env, default = QUALITY_OPTIONS[key]
    return read_option("cbm_quality", key, default, env=env)


def reports_dir() -> Path:
    """Base folder of the reports (``CBM_REPORTS_DIR``, default ``reports``)."""
    return Path(quality_option("reports_dir"))
