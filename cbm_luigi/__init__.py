"""cbm-luigi: Progress OpenEdge tables copied into an ODS (SQL Server, PostgreSQL or DuckDB) as a Luigi graph.

Per table: ``PUB.<table>`` over ODBC -> Parquet cache (snappy, with hashdiff and technical columns) ->
bulk load into ``stg.<table>`` -> MERGE into ``ods.<table>`` on the primary key, touching only rows whose
hashdiff changed.  See README.md for operation and docs/ARCHITECTURE.md for the design.
"""

from __future__ import annotations

__version__ = "0.1.0"
