"""Preflight: is this machine ready for the night run?  A list of checks, each OK / WARN / FAIL with the fix.

Global checks: Python packages and the package's cached bytecode, settings and ``.env``, the ODBC driver manager
and the drivers (or DSNs) named by the connection strings (the installed ones are listed), source and target
reachable (each within a short timeout), metadata objects present, free disk for the parquet cache, alert
channels, and the Luigi central scheduler when one is configured.  Per table (``cbm-etl preflight produit``): the config.ETL_Tables row loads,
the primary-key and modification columns exist in the source catalog, and config.ETL_Columns matches the
catalog (a loaded column gone from the source is a FAIL: the extraction would fail).

Reads only (the source catalog, the target's metadata); never prints a password.  Run: ``cbm-etl preflight``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from cbm_luigi.alerts.channels import build_channels
from cbm_luigi.config.alerts import load_alert_settings, scheduler_web_url
from cbm_luigi.config.secrets import redact
from cbm_luigi.config.settings import Settings, load_dotenv_once, load_settings
from cbm_luigi.destinations import dialect_for_url, open_target
from cbm_luigi.errors import CbmError, MetadataError
from cbm_luigi.model.specs import TableSpec
from cbm_luigi.pipeline.sources import open_source
from cbm_luigi.pipeline.sources.errors import connect_fix
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.store.schema import METADATA_TABLES
from cbm_luigi.store.views import monitoring_views

log = logging.getLogger(__name__)
OK, WARN, FAIL = "OK", "WARN", "FAIL"
T = TypeVar("T")
GIB = 1024**3

#: module -> (distribution, what needs it, required always)
PACKAGES: tuple[tuple[str, str, str, bool], ...] = (
    ("luigi", "luigi", "the task graph", True),
    ("pyarrow", "pyarrow", "batches and the parquet cache", True),
    ("sqlalchemy", "SQLAlchemy", "every target", True),
    ("duckdb", "duckdb", "key checks and the embedded target", True),
    ("dotenv", "python-dotenv", ".env", True),
    ("pandas", "pandas", "reports", False),
    ("pymsteams", "pymsteams", "legacy Teams connector URLs", False),
)
ODBC_PACKAGES = (("pyodbc", "pyodbc", "the ODBC source (catalog)", True),
                 ("arrow_odbc", "arrow-odbc", "the ODBC source (extraction)", True))


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


class TimedOut(Exception):
    pass


class Worker:
    """One daemon thread running calls in order, each with a timeout (a driver object such as a SQLite or ODBC
    connection stays on the thread that created it).  A call that times out leaves the thread busy: later
    calls time out too, which is what a hung connection deserves."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], dict[str, Any], threading.Event]] = queue.Queue()
        threading.Thread(target=self._loop, daemon=True, name="cbm-preflight").start()

    def _loop(self) -> None:
        while True:
            fn, box, done = self._jobs.get()
            try:
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                box["error"] = exc
            done.set()

    def call(self, fn: Callable[[], T], seconds: float) -> T:
        box: dict[str, Any] = {}
        done = threading.Event()
        self._jobs.put((fn, box, done))
        if not done.wait(seconds):
            raise TimedOut(f"no answer within {seconds:g} s")
        if "error" in box:
            raise box["error"]
        value: T = box["value"]
        return value


def run_with_timeout(fn: Callable[[], T], seconds: float) -> T:
    """Run ``fn`` in a fresh daemon thread; raise :class:`TimedOut` when it does not answer in time."""
    return Worker().call(fn, seconds)


PACKAGE_DIR = Path(__file__).resolve().parents[1]


def bytecode_is_current(source: Path) -> bool:
    """Whether ``source`` has a cached bytecode file this Python would load as it is (its magic number, and the
    source's modification time and size in its header; a hash-based one counts as current)."""
    try:
        with open(importlib.util.cache_from_source(str(source)), "rb") as f:
            header = f.read(16)
        st = source.stat()
    except (OSError, NotImplementedError, ValueError):
        return False
    if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER:
        return False
    if int.from_bytes(header[4:8], "little") & 1:  # hash-based (PEP 552)
        return True
    mtime, size = int.from_bytes(header[8:12], "little"), int.from_bytes(header[12:16], "little")
    return mtime == int(st.st_mtime) & 0xFFFFFFFF and size == st.st_size & 0xFFFFFFFF


def odbc_driver_name(conn_str: str) -> tuple[str, str] | None:
    """``("driver", name)`` or ``("dsn", name)`` named by an ODBC connection string, or None."""
    for key in ("DRIVER", "DSN"):
        m = re.search(rf"(?i)(?:^|;)\s*{key}\s*=\s*(\{{[^}}]*\}}|[^;]*)", conn_str)
        if m:
            return key.lower(), m.group(1).strip().strip("{}").strip()
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(f"{type(exc).__name__}: {text[0] if text else ''}")[:300]


def _error_text(exc: BaseException) -> str:
    return redact(" ".join(str(exc).split()))[:400]


@dataclass
class Preflight:
    """Collects :class:`Check` results.  ``run(tables)`` returns them in order."""

    timeout: float = 10.0
    min_free_gb: float = 1.0
    scheduler_url: str | None = None
    checks: list[Check] = field(default_factory=list)
    settings: Settings | None = None
    _source: Any = None
    _source_worker: Worker | None = None
    _target: Any = None
    _metadata_ok: bool = False

    def add(self, name: str, status: str, detail: str, fix: str = "") -> Check:
        c = Check(name, status, detail, fix)
        self.checks.append(c)
        log.debug("preflight %s: %s %s", name, status, detail)
        return c

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    def run(self, tables: Sequence[str] = ()) -> list[Check]:
        try:
            self.check_packages()
            self.check_bytecode()
            self.check_settings()
            if self.settings is not None:
                self.check_odbc()
                self.check_source()
                self.check_target()
                self.check_metadata()
                self.check_cache_disk()
            self.check_alerts()
            self.check_scheduler()
            for table in tables:
                self.check_table(table)
        finally:
            self.close()
        return self.checks

    def close(self) -> None:
        if self._source is not None and self._source_worker is not None:
            try:
                self._source_worker.call(self._source.close, self.timeout)
            except Exception:  # best effort
                log.debug("closing the source failed", exc_info=True)
            self._source = None

    # -- environment ----------------------------------------------------------------------------------------------
    def _import(self, packages: Sequence[tuple[str, str, str, bool]]) -> tuple[list[str], list[str], list[str]]:
        found: list[str] = []
        missing: list[str] = []
        optional_missing: list[str] = []
        for module, dist, why, required in packages:
            try:
                importlib.import_module(module)
                try:
                    found.append(f"{dist} {importlib.metadata.version(dist)}")
                except importlib.metadata.PackageNotFoundError:
                    found.append(dist)
            except Exception as exc:  # noqa: BLE001 - ImportError, or OSError from a missing shared library
                (missing if required else optional_missing).append(f"{dist} ({why}: {_one_line(exc)})")
        return found, missing, optional_missing

    def check_packages(self) -> None:
        found, missing, optional = self._import(PACKAGES)
        if missing:
            self.add("python packages", FAIL, "cannot import " + "; ".join(missing),
                     "pip install -e . (or pip install the package named) in the environment that runs cbm-etl")
        elif optional:
            self.add("python packages", WARN, "optional, not importable: " + "; ".join(optional),
                     "pip install the package named if you need what it serves")
        else:
            self.add("python packages", OK, ", ".join(found))

    def check_bytecode(self, package: Path = PACKAGE_DIR) -> None:
        """Every cbm-etl and luigi process imports ~100 modules of this package: without an up-to-date cached
        bytecode (``__pycache__``) that Python may not write, each process compiles them again (~0.1 s here)."""
        sources = sorted(package.rglob("*.py"))
        stale = [path for path in sources if not bytecode_is_current(path)]
        if not stale:
            self.add("bytecode", OK, f"cached for the {len(sources)} modules of {package}")
            return
        what = f"{len(stale)} of the {len(sources)} modules of {package} (first: {stale[0].relative_to(package)})"
        cannot = ("PYTHONDONTWRITEBYTECODE is set" if sys.dont_write_bytecode
                  else next((f"{p.parent} is not writable by this user" for p in stale
                             if not os.access(p.parent, os.W_OK)), ""))
        if not cannot:
            self.add("bytecode", OK, f"not cached yet for {what}: Python caches them at their first import")
            return
        self.add("bytecode", WARN, f"no up-to-date cached bytecode for {what}, and this Python cannot write it "
                 f"({cannot}): every cbm-etl and luigi process compiles them again (~0.1 s each)",
                 f"{sys.executable} -m compileall -q {package}  (after every install or update of cbm-luigi)")

    def check_settings(self) -> None:
        env = Path.cwd() / ".env"
        if env.is_file():
            mode = env.stat().st_mode & 0o777
            if os.name == "posix" and mode & 0o044:
                who = {0o044: "its group and others", 0o040: "its group", 0o004: "others"}[mode & 0o044]
                self.add(".env", WARN, f"{env} is readable by {who} (mode {mode:03o}): it holds passwords and "
                         "webhook URLs",
                         "chmod 600 .env")
            else:
                self.add(".env", OK, f"found: {env}")
        else:
            self.add(".env", WARN, f"no .env in {Path.cwd()} (settings come from the environment and luigi.cfg)",
                     "cp .env.example .env and fill in the connection strings and passwords")
        load_dotenv_once()
        try:
            s = load_settings()
        except CbmError as exc:
            self.add("settings", FAIL, _error_text(exc), "fix the setting named (in .env or luigi.cfg [cbm])")
            return
        self.settings = s
        if not s.source:
            self.add("settings", FAIL, "CBM_SOURCE is not set",
                     "set CBM_SOURCE in .env: an ODBC connection string (DRIVER={...};HOST=...) or DSN=...")
            return
        self.add("settings", OK, f"source {redact(s.source)} ({s.source_flavor}, schema {s.source_schema}); "
                                 f"target {redact(s.target)}")

    def _odbc_needed(self) -> list[tuple[str, str]]:
        """(what, ODBC connection string) pairs that go through the ODBC driver manager."""
        assert self.settings is not None
        out = []
        if not self.settings.source.lower().startswith("sqlite:///"):
            out.append(("source", self.settings.source))
        try:
            url = sa.engine.make_url(self.settings.target)
            if url.get_driver_name() == "pyodbc":
                driver = url.query.get("driver")
                odbc = url.query.get("odbc_connect")
                if isinstance(driver, str):
                    out.append(("target", f"DRIVER={{{driver}}}"))
                elif isinstance(odbc, str):
                    out.append(("target", odbc))
                elif url.host and not url.username:
                    out.append(("target", f"DSN={url.host}"))
        except Exception:  # the target check reports a bad URL
            log.debug("target URL not parsed", exc_info=True)
        return out

    def check_odbc(self) -> None:
        needed = self._odbc_needed()
        if not needed:
            self.add("ODBC", OK, "not needed (SQLite source, non-ODBC target)")
            return
        found, missing, _ = self._import(ODBC_PACKAGES)
        if missing:
            self.add("ODBC driver manager", FAIL, "; ".join(missing),
                     "install unixODBC (Debian/Ubuntu: apt install unixodbc; RHEL: dnf install unixODBC) and "
                     "pip install pyodbc arrow-odbc; on Windows the driver manager is built in")
            return
        import pyodbc  # deferred: the ODBC driver manager loads only where ODBC is used

        drivers = sorted(pyodbc.drivers())
        self.add("ODBC driver manager", OK, f"{', '.join(found)}; installed drivers: {', '.join(drivers) or 'none'}")
        for what, conn in needed:
            named = odbc_driver_name(conn)
            if named is None:
                self.add(f"ODBC driver ({what})", WARN, "the connection string names no DRIVER= or DSN=",
                         "add DRIVER={name} (one of the installed drivers) or DSN=name")
            elif named[0] == "driver":
                if named[1] in drivers:
                    self.add(f"ODBC driver ({what})", OK, f"{named[1]!r} installed")
                else:
                    self.add(f"ODBC driver ({what})", FAIL,
                             f"ODBC driver {named[1]!r} is not installed; installed: {', '.join(drivers) or 'none'}",
                             f"install the {named[1]} ODBC driver (registered in odbcinst.ini: odbcinst -q -d), "
                             "or fix DRIVER={...} in " + ("CBM_SOURCE" if what == "source" else "CBM_TARGET")
                             + " to an installed name")
            else:
                dsns = pyodbc.dataSources()
                if named[1] in dsns:
                    self.add(f"ODBC DSN ({what})", OK, f"DSN {named[1]!r} -> driver {dsns[named[1]]!r}")
                else:
                    self.add(f"ODBC DSN ({what})", FAIL,
                             f"DSN {named[1]!r} is not defined; defined: {', '.join(sorted(dsns)) or 'none'}",
                             "define it in odbc.ini (odbcinst -q -s lists them) or use DRIVER={...};HOST=... instead")

    # -- connections ------------------------------------------------------------------------------------------------
    def check_source(self) -> None:
        assert self.settings is not None
        s = self.settings.with_overrides(source_login_timeout=max(1, int(self.timeout)))
        started = time.perf_counter()

        def probe() -> Any:
            source = open_source(s)
            try:
                clock = source.clock()
            except BaseException:
                source.close()
                raise
            return source, clock

        self._source_worker = Worker()
        try:
            self._source, clock = self._source_worker.call(probe, self.timeout)
        except TimedOut as exc:
            self.add("source", FAIL, f"{redact(s.source)}: {exc}",
                     "check that the server and port in CBM_SOURCE are reachable from this machine (firewall, VPN)")
            return
        except Exception as exc:  # noqa: BLE001 - any failure is reported as a FAIL line
            self.add("source", FAIL, _error_text(exc), self._connect_fix(exc, "CBM_SOURCE", "CBM_SOURCE_PASSWORD"))
            return
        self.add("source", OK, f"connected in {time.perf_counter() - started:.1f} s; source clock {clock:%Y-%m-%d %H:%M:%S}")

    def check_target(self) -> None:

        assert self.settings is not None
        url = self.settings.target
        try:
            dialect = dialect_for_url(url)
            u = sa.engine.make_url(url)
            u.get_dialect().import_dbapi()
        except ImportError as exc:
            self.add("target", FAIL, f"{redact(url)}: driver not importable: {_one_line(exc)}",
                     "pip install the database driver of CBM_TARGET (psycopg, mssql-python, pyodbc, duckdb-engine)")
            return
        except Exception as exc:  # noqa: BLE001 - any failure is reported as a FAIL line
            self.add("target", FAIL, _error_text(exc), "fix CBM_TARGET (a SQLAlchemy URL, e.g. duckdb:///data/cbm_ods.duckdb)")
            return
        if dialect.single_writer and u.database and u.database != ":memory:" and not Path(u.database).exists():
            self.add("target", FAIL, f"{redact(url)}: database file {u.database} does not exist yet",
                     "run: cbm-etl init-db")
            return
        started = time.perf_counter()

        def probe() -> Any:
            t = open_target(url)
            with t.begin() as conn:
                conn.scalar("SELECT 1")
            return t

        try:
            self._target = run_with_timeout(probe, self.timeout)
        except TimedOut as exc:
            self.add("target", FAIL, f"{redact(url)}: {exc}",
                     "check that the database server in CBM_TARGET is reachable from this machine (firewall, VPN)")
            return
        except Exception as exc:  # noqa: BLE001 - any failure is reported as a FAIL line
            self.add("target", FAIL, _error_text(exc), self._connect_fix(exc, "CBM_TARGET", "CBM_TARGET_PASSWORD"))
            return
        self.add("target", OK, f"{redact(url)}: connected in {time.perf_counter() - started:.1f} s")

    @staticmethod
    def _connect_fix(exc: BaseException, setting: str, password: str) -> str:
        return connect_fix(exc, setting, password)  # the same hint as the run's message (pipeline/sources/errors)

    def check_metadata(self) -> None:
        if self._target is None:
            return
        t = self._target
        missing_tables, missing_cols = [], []
        try:
            with t.begin() as conn:
                for meta in METADATA_TABLES:
                    have = {c.lower() for c in t.existing_columns(conn, meta.schema, meta.name)}
                    if not have:
                        missing_tables.append(f"{meta.schema}.{meta.name}")
                        continue
                    gone = [c.name for c in meta.columns if c.name.lower() not in have]
                    if gone:
                        missing_cols.append(f"{meta.schema}.{meta.name} ({', '.join(gone)})")
                view_names = list(monitoring_views(t.dialect))
                views = [f"etl.{v}" for v in view_names if not t.existing_columns(conn, "etl", v)]
        except Exception as exc:  # noqa: BLE001 - any failure is reported as a FAIL line
            self.add("metadata objects", FAIL, _error_text(exc), "run: cbm-etl init-db")
            return
        problems = missing_tables + [f"columns of {m}" for m in missing_cols] + views
        # the table checks need the config tables; missing views only hurt monitoring
        self._metadata_ok = not missing_tables and not missing_cols
        if problems:
            self.add("metadata objects", FAIL, "missing: " + "; ".join(problems),
                     "run: cbm-etl init-db (creates what is missing, adds missing columns; keeps the data)")
            return
        self.add("metadata objects", OK, f"{len(METADATA_TABLES)} metadata tables"
                 + (f", {len(view_names)} monitoring views" if view_names else ""))

    def check_cache_disk(self) -> None:
        assert self.settings is not None
        cache = self.settings.cache_dir.resolve()
        probe = cache
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        writable = os.access(probe, os.W_OK)
        if cache.exists() and writable:
            try:
                with tempfile.NamedTemporaryFile(dir=cache, prefix=".preflight-"):
                    pass
            except OSError:
                writable = False
        detail = f"{cache}: {free / GIB:.1f} GiB free" + ("" if cache.exists() else f" (will be created under {probe})")
        if not writable:
            self.add("cache disk", FAIL, f"{detail}; not writable by this user",
                     f"give this user write access to {probe}, or set CBM_CACHE_DIR to a writable directory")
        elif free < self.min_free_gb * GIB:
            self.add("cache disk", FAIL, f"{detail} (below {self.min_free_gb:g} GiB)",
                     "free space (cbm-etl cleanup-cache --days 7) or set CBM_CACHE_DIR to a larger disk")
        elif free < 5 * self.min_free_gb * GIB:
            self.add("cache disk", WARN, f"{detail} (below {5 * self.min_free_gb:g} GiB)",
                     "cbm-etl cleanup-cache --days 7, or a larger disk for CBM_CACHE_DIR")
        else:
            self.add("cache disk", OK, detail)

    def check_alerts(self) -> None:
        try:
            a = load_alert_settings()
        except CbmError as exc:
            self.add("alerts", FAIL, _error_text(exc), "fix the setting named, then: cbm-etl test-alert")
            return
        channels = build_channels(a)
        if not channels:
            self.add("alerts", WARN, "no channel: failures are only in etl.ETL_Log and Luigi's output",
                     "set CBM_TEAMS_WEBHOOK in .env and/or [email] receiver + [smtp] in luigi.cfg; "
                     "then: cbm-etl test-alert")
            return
        names = [f"{c.name} ({getattr(c, 'host', '')})" if getattr(c, "host", "") else c.name for c in channels]
        self.add("alerts", OK, ", ".join(names) + " (cbm-etl test-alert sends a test)")

    def check_scheduler(self) -> None:
        url = self.scheduler_url or scheduler_web_url()
        if not url:
            self.add("scheduler", OK, "none configured (loads use Luigi's local scheduler)")
            return
        url = url.rstrip("/")
        try:
            with urllib.request.urlopen(f"{url}/api/worker_list", timeout=self.timeout) as resp:
                body = json.loads(resp.read(1_000_000).decode("utf-8"))
            workers = len(body.get("response") or [])
        except Exception as exc:  # noqa: BLE001 - any failure is reported as a FAIL line
            self.add("scheduler", FAIL, f"{url}: {_one_line(exc)}",
                     "start it (luigid --background --port 8082 --logdir data/logs) or fix "
                     "[core] default_scheduler_host/port in luigi.cfg")
            return
        self.add("scheduler", OK, f"{url}: luigid answers ({workers} worker(s) connected)")

    # -- per table ------------------------------------------------------------------------------------------------
    def check_table(self, name: str) -> None:
        label = f"table {name}"
        if self._target is None or not self._metadata_ok:
            self.add(f"{label}: config", FAIL, "skipped: the target or its metadata tables are not ready",
                     "fix the target checks above first")
            return
        store = MetadataStore(self._target)
        spec: TableSpec | None = None
        table = name
        try:
            table = store.resolve_table(name)
            spec = store.table_spec(table)
            mode = f"incremental on {spec.date_modif_col}" if spec.is_incremental_capable else "always full"
            self.add(f"{label}: config", OK,
                     f"key ({', '.join(spec.primary_key)}), {mode}, priority {spec.priority}, "
                     f"{len(spec.loaded_columns)} loaded column(s)" + ("" if spec.is_active else ", INACTIVE"))
        except MetadataError as exc:
            self.add(f"{label}: config", FAIL, _error_text(exc),
                     f"cbm-etl sync-columns {name} && cbm-etl add-table {name} --pk <key columns> "
                     "[--date-modif-col <column>]" if "not registered" in str(exc) else
                     "fix the config.ETL_Tables / config.ETL_Columns row as the message says")
        except Exception as exc:  # noqa: BLE001 - any failure is reported as a FAIL line
            self.add(f"{label}: config", FAIL, _error_text(exc), "run: cbm-etl init-db, then check the target")
            return
        if self._source is None:
            self.add(f"{label}: source catalog", FAIL, "skipped: the source is not reachable",
                     "fix the source checks above first")
            return
        try:
            assert self._source_worker is not None
            catalog = self._source_worker.call(lambda: self._find_in_catalog(table), self.timeout * 3)
        except Exception as exc:  # noqa: BLE001 - any failure is reported as a FAIL line
            self.add(f"{label}: source catalog", FAIL, _error_text(exc),
                     "check the source connection and that this user may read the catalog")
            return
        assert self.settings is not None
        if not catalog:
            self.add(f"{label}: source catalog", FAIL,
                     f"table {table!r} not found in source schema {self.settings.source_schema!r}",
                     "check the table name and CBM_SOURCE_SCHEMA (and that this user can see the table)")
            return
        source_name, columns = catalog
        by_lower = {c.column_name.lower(): c for c in columns}
        self.add(f"{label}: source catalog", OK,
                 f"{self.settings.source_schema}.{source_name}: {len(columns)} column(s)")
        if spec is None:
            return
        self._check_key_columns(label, spec, by_lower, source_name)
        self._check_columns_synced(label, spec, by_lower, store)

    def _find_in_catalog(self, table: str) -> tuple[str, list[Any]] | None:
        for candidate in dict.fromkeys((table, table.lower(), table.upper(), table.replace("_", "-"))):
            cols = self._source.catalog(candidate)
            if cols:
                return candidate, cols
        return None

    def _check_key_columns(self, label: str, spec: Any, by_lower: dict[str, Any], source_name: str) -> None:
        wanted = [(spec.column(k).column_name, "primary key") for k in spec.primary_key]
        if spec.date_modif_col:
            wanted.append((spec.column(spec.date_modif_col).column_name, "DateModifCol"))
        missing = [(c, role) for c, role in wanted if c.lower() not in by_lower]
        if missing:
            what = ", ".join(f"{c!r} ({role})" for c, role in missing)
            self.add(f"{label}: key columns", FAIL,
                     f"not in the source catalog of {source_name}: {what}",
                     f"fix config.ETL_Tables: cbm-etl add-table {spec.table_name} --pk <columns> "
                     "[--date-modif-col <column>] with columns that exist in the source, then "
                     f"cbm-etl sync-columns {spec.table_name}")
        else:
            self.add(f"{label}: key columns", OK, ", ".join(f"{c} ({role})" for c, role in wanted))

    def _check_columns_synced(self, label: str, spec: Any, by_lower: dict[str, Any], store: Any) -> None:
        config_cols = {c.column_name.lower(): c for c in store.column_specs(spec.table_name)}
        new = [c.column_name for k, c in by_lower.items() if k not in config_cols]
        gone_loaded = [c.column_name for k, c in config_cols.items() if k not in by_lower and not c.is_excluded]
        changed = []
        for k, cfg in config_cols.items():
            cat = by_lower.get(k)
            if cat is None or cfg.is_excluded:
                continue
            # a decimal the catalog declares no scale for: an operator's NumericScale is kept by a sync, but
            # figures from an older sync (NumericPrecision set, psqlODBC's made-up 28,6) call for one
            scale_changed = (cat.scale or 0) != (cfg.scale or 0) if cat.scale is not None or \
                cat.logical_type != "decimal" else cfg.precision is not None
            if cat.logical_type != cfg.logical_type or (cat.width or None) != (cfg.width or None) or scale_changed:
                changed.append(f"{cfg.column_name} {cfg.logical_type}({cfg.width or ''}) -> "
                               f"{cat.logical_type}({cat.width or ''})")
        sync = f"cbm-etl sync-columns {spec.table_name}"
        if gone_loaded:
            self.add(f"{label}: columns synced", FAIL,
                     f"loaded column(s) missing from the source: {', '.join(gone_loaded)} (the extraction would fail)",
                     f"{sync} (marks them as gone from the source; the ODS keeps them), or restore the columns")
        elif new or changed:
            parts = []
            if new:
                parts.append(f"{len(new)} new in the source, not loaded: {', '.join(new)}")
            if changed:
                parts.append("changed in the source: " + "; ".join(changed))
            self.add(f"{label}: columns synced", WARN, "; ".join(parts), sync)
        else:
            self.add(f"{label}: columns synced", OK, f"{len(config_cols)} column(s) match the catalog")
