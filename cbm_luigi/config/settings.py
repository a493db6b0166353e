"""Settings: ``luigi.cfg`` section ``[cbm]``, ``.env`` and the environment (the environment wins).

=====================  ===========================  ==============================================
environment            luigi.cfg ``[cbm]``           meaning
=====================  ===========================  ==============================================
CBM_SOURCE             source                       ODBC connection string (or ``sqlite:///file``)
CBM_SOURCE_FLAVOR      source_flavor                progress (default) | postgresql | sqlite
CBM_SOURCE_SCHEMA      source_schema                source schema, default ``PUB``
CBM_TARGET             target                       SQLAlchemy URL, default ``duckdb:///data/cbm_ods.duckdb``
CBM_CACHE_DIR          cache_dir                    parquet cache, default ``data/cache/parquet``
CBM_LOG_DIR            log_dir                      run logs, default ``data/logs``
CBM_BATCH_GRANULARITY  batch_granularity            day (default) | hour: the default ``--batch-id``
CBM_EXTRACT_BATCH_ROWS extract_batch_rows           rows per Arrow record batch read from the source (at most)
CBM_EXTRACT_BATCH_MB   extract_batch_mb             MiB of ODBC fetch buffers per batch (caps the rows of wide tables)
CBM_TRANSFORM_WORKERS  transform_workers            threads hashing batches while the next ones are read
CBM_STAGE_WHILE_EXTRACTING  stage_while_extracting  1: stream rows into staging during the extract (PostgreSQL)
CBM_SOURCE_TIMEOUT     source_login_timeout         seconds to wait for a source connection
=====================  ===========================  ==============================================

Values may contain ``${NAME}``, expanded from the environment (so a password can stay in ``.env``):
``CBM_TARGET='postgresql+psycopg://etl:${CBM_TARGET_PASSWORD}@host/ods'``.
Secrets are never logged: use :func:`redact` before showing a connection string.
"""

from __future__ import annotations

import configparser
import contextlib
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import luigi
import luigi.configuration
from dotenv import load_dotenv

from cbm_luigi.errors import ConfigError, config_file_error
from cbm_luigi.model.values import parse_bool

FLAVORS = ("progress", "postgresql", "sqlite")
GRANULARITIES = ("day", "hour")
#: not data/ods.duckdb: DuckDB names the catalog after the file, and a catalog ``ods`` makes ``SELECT * FROM
#: ods.client`` ambiguous between that catalog and the schema ``ods``
DEFAULT_TARGET = "duckdb:///data/cbm_ods.duckdb"
#: the default before: a checkout that has this file and not the new one keeps using it (:func:`_default_target`)
LEGACY_DEFAULT_TARGET = "duckdb:///data/ods.duckdb"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class cbm(luigi.Config):
    """The ``[cbm]`` section of luigi.cfg (every option can be overridden by its CBM_* variable)."""

    source = luigi.Parameter(default="")
    source_flavor = luigi.Parameter(default="progress")
    source_schema = luigi.Parameter(default="PUB")
    target = luigi.Parameter(default=DEFAULT_TARGET)
    cache_dir = luigi.Parameter(default="data/cache/parquet")
    log_dir = luigi.Parameter(default="data/logs")
    batch_granularity = luigi.Parameter(default="day")
    extract_batch_rows = luigi.IntParameter(default=10_000)
    extract_batch_mb = luigi.IntParameter(default=64)
    transform_workers = luigi.IntParameter(default=2)
    stage_while_extracting = luigi.BoolParameter(default=True)
    rows_per_parquet_file = luigi.IntParameter(default=1_000_000)
    source_login_timeout = luigi.IntParameter(default=30)


@dataclass(frozen=True)
class Settings:
    """Resolved settings, immutable.  Build with :func:`load_settings`."""

    source: str
    source_flavor: str
    source_schema: str
    target: str
    cache_dir: Path
    log_dir: Path
    batch_granularity: str
    extract_batch_rows: int
    rows_per_parquet_file: int
    source_login_timeout: int
    # performance (docs/PERFORMANCE.md)
    extract_batch_mb: int = 64
    transform_workers: int = 2
    stage_while_extracting: bool = True

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


_dotenv_loaded = False


def load_dotenv_once(path: str | os.PathLike[str] | None = None) -> None:
    """Load ``.env`` (current directory) into the environment without overriding what is set."""
    global _dotenv_loaded
    if _dotenv_loaded and path is None:
        return

    load_dotenv(dotenv_path=path or Path.cwd() / ".env", override=False)
    _dotenv_loaded = True


def expand_env(value: str, setting: str) -> str:
    """Expand ``${NAME}`` references from the environment; a missing one is a ConfigError naming it."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise ConfigError(
                f"setting {setting} refers to ${{{name}}}, which is not set: "
                f"export {name}=... or put it in .env"
            )
        return os.environ[name]

    return _ENV_REF.sub(sub, value)


def _pick(env_name: str, cfg_value: object) -> str:
    raw = os.environ.get(env_name)
    value = str(cfg_value) if raw is None or raw == "" else raw
    return expand_env(value, env_name)


def _as_int(env_name: str, cfg_value: object, minimum: int = 1) -> int:
    text = _pick(env_name, cfg_value)
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{env_name} must be a whole number, got {text!r}") from None
    if value < minimum:
        raise ConfigError(f"{env_name} must be at least {minimum}, got {value}")
    return value


def _as_bool(env_name: str, cfg_value: object) -> bool:
    text = _pick(env_name, cfg_value).strip().lower()
    try:
        return parse_bool(text)
    except ValueError:
        raise ConfigError(f"{env_name} must be true or false (1 / 0), got {text!r}") from None


C = TypeVar("C", bound=luigi.Config)

#: option -> environment variable, where it is not CBM_<OPTION>
_ENV_NAMES = {"source_login_timeout": "CBM_SOURCE_TIMEOUT"}
_KINDS = {"IntParameter": "a whole number", "FloatParameter": "a number", "BoolParameter": "true or false"}


def _config_file_of(section: str, option: str) -> str:
    """The last luigi.cfg file read that sets ``[section] option`` (the one that wins), or 'luigi.cfg'."""
    parser = luigi.configuration.get_config()
    for path in reversed(list(getattr(parser, "_config_paths", []))):
        one = configparser.RawConfigParser()
        with contextlib.suppress(configparser.Error, OSError, UnicodeDecodeError):
            if one.read(path) and one.has_option(section, option):
                return f"luigi.cfg {path}"
    return "luigi.cfg"


def read_section(cls: type[C]) -> C:
    """Instantiate a ``luigi.Config`` section; a value luigi cannot parse is a ConfigError naming the option,
    its file and the fix (luigi itself says only "Error when parsing the default value of 'x'")."""
    try:
        return cls()
    except (ValueError, configparser.Error) as exc:
        cause: BaseException = exc.__cause__ or exc
        if isinstance(cause, configparser.InterpolationError):  # name the file that sets the option
            text = str(config_file_error(cause)).removeprefix("luigi.cfg ")
            raise ConfigError(f"{_config_file_of(cause.section, cause.option)} {text}") from exc
        if isinstance(cause, configparser.Error):
            raise config_file_error(cause) from exc
        section = cls.get_task_family()
        for name, param in cls.get_params():
            raw = luigi.configuration.get_config().get(section, name, None)
            if raw is None:
                continue
            try:
                param.parse(raw)
            except (ValueError, TypeError):
                kind = _KINDS.get(type(param).__name__, "a valid value")
                if isinstance(param, luigi.ChoiceParameter):
                    kind = "one of " + ", ".join(map(str, param._choices))
                env = f" ({_ENV_NAMES.get(name, f'CBM_{name.upper()}')})" if section == "cbm" else ""
                raise ConfigError(f"{_config_file_of(section, name)}: [{section}] {name}{env} = {raw!r} is not "
                                  f"{kind}: write {kind} (default {param._default!r})") from None
        raise ConfigError(f"luigi.cfg [{section}] cannot be read: {str(exc).splitlines()[0]}") from exc


_legacy_warned = False


def _default_target(target: str) -> str:
    """The target, or the ODS file of a checkout set up before the default became data/cbm_ods.duckdb: with
    the default target, no data/cbm_ods.duckdb and a data/ods.duckdb, that file (its registrations, watermarks
    and data) keeps being used, with a warning saying how to rename it."""
    global _legacy_warned
    new, old = (Path(url.removeprefix("duckdb:///")) for url in (DEFAULT_TARGET, LEGACY_DEFAULT_TARGET))
    if target != DEFAULT_TARGET or new.exists() or not old.exists():
        return target
    if not _legacy_warned:
        _legacy_warned = True
        logging.getLogger(__name__).warning(
            "target: using %s, the default ODS file before it became %s; rename it (mv %s %s, while no cbm-etl "
            "or luigi runs) or set CBM_TARGET=%s", old, new, old, new, LEGACY_DEFAULT_TARGET)
    return LEGACY_DEFAULT_TARGET


def load_settings() -> Settings:
    """Read ``.env``, luigi.cfg ``[cbm]`` and the environment, validate, and return the settings."""
    load_dotenv_once()
    section = read_section(cbm)
    flavor = _pick("CBM_SOURCE_FLAVOR", section.source_flavor).lower()
    if flavor not in FLAVORS:
        raise ConfigError(f"CBM_SOURCE_FLAVOR={flavor!r} is not supported; use one of {', '.join(FLAVORS)}")
    granularity = _pick("CBM_BATCH_GRANULARITY", section.batch_granularity).lower()
    if granularity not in GRANULARITIES:
        raise ConfigError(
            f"CBM_BATCH_GRANULARITY={granularity!r} is not supported; use one of {', '.join(GRANULARITIES)}"
        )
    return Settings(
        source=_pick("CBM_SOURCE", section.source),
        source_flavor=flavor,
        source_schema=_pick("CBM_SOURCE_SCHEMA", section.source_schema),
        target=_default_target(_pick("CBM_TARGET", section.target)),
        cache_dir=Path(_pick("CBM_CACHE_DIR", section.cache_dir)),
        log_dir=Path(_pick("CBM_LOG_DIR", section.log_dir)),
        batch_granularity=granularity,
        extract_batch_rows=_as_int("CBM_EXTRACT_BATCH_ROWS", section.extract_batch_rows),
        rows_per_parquet_file=_as_int("CBM_ROWS_PER_PARQUET_FILE", section.rows_per_parquet_file),
        source_login_timeout=_as_int("CBM_SOURCE_TIMEOUT", section.source_login_timeout),
        extract_batch_mb=_as_int("CBM_EXTRACT_BATCH_MB", section.extract_batch_mb),
        transform_workers=_as_int("CBM_TRANSFORM_WORKERS", section.transform_workers),
        stage_while_extracting=_as_bool("CBM_STAGE_WHILE_EXTRACTING", section.stage_while_extracting),
    )


