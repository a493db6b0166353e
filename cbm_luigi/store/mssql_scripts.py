"""The DBA scripts of ``sql/mssql/``: schemas, metadata tables, views and roles of a SQL Server target, as T-SQL.

Generated from the SQL Server dialect and the store's table descriptions; pinned by tests/destinations/test_mssql_golden.py
(``CBM_UPDATE_GOLDEN=1`` rewrites them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cbm_luigi.destinations.mssql import DEPLOY_ROLE, ROLE, MssqlDialect, role_statements
from cbm_luigi.destinations.types import ColumnDef
from cbm_luigi.model.meta import MetaTable
from cbm_luigi.store.schema import METADATA_TABLES, SCHEMAS
from cbm_luigi.store.views import view_statements


def scripts() -> dict[str, str]:
    """The numbered, idempotent DBA scripts of sql/mssql/, generated from the dialect (apply in name order)."""
    d = MssqlDialect()

    def meta(m: MetaTable) -> str:
        cols = [ColumnDef(c.name, d.column_type(c.logical_type, c.width, c.precision, c.scale), c.nullable)
                for c in m.columns]
        return d.create_table_sql(m.schema, m.name, cols, m.primary_key)

    def script(title: str, statements: Sequence[str]) -> str:
        head = (f"-- {title}\n-- Generated from cbm_luigi/store/mssql_scripts.py (CBM_UPDATE_GOLDEN=1 python -m pytest "
                "tests/destinations/test_mssql_golden.py); do not edit by hand.\n-- Idempotent: safe to run again. Run with "
                "sqlcmd -b -i <file> or in SSMS (GO separates the batches).\n\n")
        return head + "".join(f"{s};\nGO\n\n" for s in statements).rstrip("\n") + "\n"

    return {
        "01_schemas.sql": script("Schemas: config (metadata), etl (run log), stg (staging), ods (the copy), "
                                 "hist (SCD2 versions of dimensions).",
                                 [d.create_schema_sql(s) for s in SCHEMAS]),
        "02_config_tables.sql": script("config tables: which tables to load, their columns and dependencies.",
                                       [meta(m) for m in METADATA_TABLES if m.schema == "config"]),
        "03_etl_tables.sql": script("etl tables: run log, markers, staging state, alerts, validation, quality.",
                                    [meta(m) for m in METADATA_TABLES if m.schema == "etl"]),
        "04_views.sql": script("Monitoring views: etl.vw_LastRuns, etl.vw_TablePerformance, etl.vw_SLABreach.",
                               view_statements(d)),
        "05_roles.sql": script(f"Least-privilege roles: {ROLE} (nightly loads) and {DEPLOY_ROLE} (also init-db). "
                               "See sql/mssql/README.md.", role_statements()),
    }


def write_scripts(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in scripts().items():
        path = directory / name
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written
