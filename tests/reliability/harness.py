"""The reliability catalogue's harness: a loaded demo (SQLite source, DuckDB ODS) copied per case, the real
``cbm-etl`` command run against the copy, and the state that must not move (ODS rows, watermarks, markers)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

TABLES = ("client", "fournis", "produit", "hisprixa", "lignecli")


@dataclass
class Site:
    """One copy of the loaded demo: its folder, the environment of its commands."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> Path:
        return self.root / "data" / "demo" / "erp.sqlite"

    @property
    def ods(self) -> Path:
        return self.root / "data" / "demo" / "cbm_demo.duckdb"

    @property
    def cache(self) -> Path:
        return self.root / "data" / "demo" / "cache"

    def cbm(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """The real command, in the site's folder, with its environment."""
        return subprocess.run(["cbm-etl", *args], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def source_sql(self, *statements: str) -> None:
        with sqlite3.connect(self.source) as c:
            for s in statements:
                c.execute(s)

    def ods_sql(self, *statements: str, params: list[Any] | None = None) -> None:
        con = duckdb.connect(str(self.ods))
        try:
            for s in statements:
                con.execute(s, params or [])
        finally:
            con.close()

    def state(self) -> dict[str, str]:
        """What a failed or killed run must leave as it was: every ODS table's rows, watermarks, markers."""
        con = duckdb.connect(str(self.ods), read_only=True)
        try:
            out: dict[str, str] = {}
            for t in TABLES:
                rows = con.execute(f'SELECT * FROM ods."{t}" ORDER BY ALL').fetchall()
                out[f"ods.{t}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
            out["watermarks"] = repr(con.execute(
                'SELECT "TableName", "LastSuccessTs" FROM config."ETL_Tables" ORDER BY 1').fetchall())
            out["markers"] = repr(con.execute('SELECT "MarkerId" FROM etl."ETL_Markers" ORDER BY 1').fetchall())
            return out
        finally:
            con.close()

    def source_rows(self, table: str) -> int:
        with sqlite3.connect(self.source) as c:
            return int(c.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])

    def ods_rows(self, table: str) -> int:
        con = duckdb.connect(str(self.ods), read_only=True)
        try:
            row = con.execute(f'SELECT COUNT(*) FROM ods."{table}"').fetchone()
            return int(row[0]) if row else 0
        finally:
            con.close()


def base_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CBM_", "LUIGI_CONFIG"))}
    demo = root / "data" / "demo"
    env.update({
        "CBM_SOURCE": f"sqlite:///{demo / 'erp.sqlite'}", "CBM_SOURCE_FLAVOR": "sqlite", "CBM_SOURCE_SCHEMA": "PUB",
        "CBM_TARGET": f"duckdb:///{demo / 'cbm_demo.duckdb'}", "CBM_CACHE_DIR": str(demo / "cache"),
        "CBM_LOG_DIR": str(root / "logs"), "CBM_REPORTS_DIR": str(root / "reports"), "CBM_NIGHT_REPORT": "0",
        # one attempt, short waits: a catalogue of failures must not wait for retries
        "CBM_RETRY_ATTEMPTS": "1", "CBM_RETRY_DELAY": "0", "CBM_TARGET_LOCK_TIMEOUT": "30",
    })
    return env


def make_base(root: Path) -> Site:
    """``cbm-etl demo``: the five demo tables loaded (a full and an incremental batch)."""
    root.mkdir(parents=True, exist_ok=True)
    site = Site(root, base_env(root))
    done = subprocess.run(["cbm-etl", "demo"], cwd=root, env=site.env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return site


def copy_site(base: Site, root: Path) -> Site:
    shutil.copytree(base.root, root, ignore=shutil.ignore_patterns("*.cbm-lock", "logs", "reports"))
    return Site(root, base_env(root))


@dataclass(frozen=True)
class Case:
    """A bad input: what it does to a copy of the demo, the command, what must be said, the exit code."""

    name: str
    setup: Callable[[Site], None]
    argv: tuple[str, ...]
    exit_code: int
    says: tuple[str, ...]  # every one of these appears in the output (case-insensitive)
    changes_nothing: bool = True  # ODS, watermarks and markers stay as they were
