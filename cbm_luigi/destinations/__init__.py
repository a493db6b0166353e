"""Destination dialects and the factory that picks one from the target URL.

``duckdb:///path.duckdb`` (embedded default), ``postgresql+psycopg://...``, ``mssql+pyodbc://...`` or
``mssql+mssqlpython://...`` (SQL Server, see docs/SQLSERVER.md).
"""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa

from cbm_luigi.config.secrets import redact
from cbm_luigi.destinations.client import Target
from cbm_luigi.destinations.dialect import Dialect
from cbm_luigi.destinations.duckdb import DuckDBDialect
from cbm_luigi.errors import ConfigError

#: PostgreSQL and SQL Server are added on first use (:func:`_dialect_class`): their bulk paths import pyarrow,
#: which a command on a DuckDB target (``cbm-etl tables``, ``status``) does not need at start-up
_DIALECTS: dict[str, type[Dialect]] = {"duckdb": DuckDBDialect}
_BACKENDS = ("duckdb", "mssql", "postgresql")


def register_dialect(backend: str, cls: type[Dialect]) -> None:
    _DIALECTS[backend] = cls


def _dialect_class(backend: str) -> type[Dialect] | None:
    if backend == "postgresql" and backend not in _DIALECTS:
        from cbm_luigi.destinations.postgresql import PostgresDialect  # deferred: start-up of cbm-etl

        _DIALECTS[backend] = PostgresDialect
    elif backend == "mssql" and backend not in _DIALECTS:
        from cbm_luigi.destinations.mssql import MssqlDialect  # deferred: start-up of cbm-etl

        _DIALECTS[backend] = MssqlDialect
    return _DIALECTS.get(backend)


def dialect_for_url(url: str) -> Dialect:
    try:
        backend = sa.engine.make_url(url).get_backend_name()
    except Exception as exc:
        raise ConfigError(f"CBM_TARGET {redact(url)!r} is not a valid URL (e.g. duckdb:///data/cbm_ods.duckdb)") from exc
    cls = _dialect_class(backend)
    if cls is None:
        raise ConfigError(
            f"CBM_TARGET backend {backend!r} is not supported; use one of "
            f"{', '.join(sorted({*_BACKENDS, *_DIALECTS}))}"
        )
    return cls.for_url(sa.engine.make_url(url))


@functools.lru_cache(maxsize=8)
def open_target(url: str) -> Target:
    """One Target per URL and process.  DuckDB connections are not pooled (single writer per file)."""
    dialect = dialect_for_url(url)
    u = sa.engine.make_url(url)
    kwargs: dict[str, object] = {}
    if dialect.single_writer:
        kwargs["poolclass"] = sa.pool.NullPool
        if u.database and u.database != ":memory:":
            folder = Path(u.database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"CBM_TARGET {redact(url)!r}: cannot create the folder {folder} of the database "
                                  f"file ({exc.strerror or exc}): fix the path, or create the folder") from exc
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(url, **kwargs)
    except Exception as exc:
        raise ConfigError(f"cannot use CBM_TARGET {redact(url)!r}: {exc}") from exc
    return Target(url, dialect, engine)
