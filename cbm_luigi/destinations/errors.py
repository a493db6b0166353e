"""Driver errors of a destination: which are transient, and their translation into a TargetError that names the
table, the step and the statement.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import sqlalchemy as sa

from cbm_luigi.config.secrets import redact
from cbm_luigi.destinations.types import TypeMapping
from cbm_luigi.errors import CbmError, TargetError, TransientTargetError

if TYPE_CHECKING:
    pass


class ErrorTranslation(TypeMapping):
    """Error classes of a destination (a dialect overrides is_transient)."""

    # -- errors -----------------------------------------------------------------------------------------------
    def is_transient(self, exc: BaseException) -> bool:
        return False

    def translate_error(self, exc: BaseException, *, table: str | None, step: str | None,
                        statement: str = "") -> CbmError:
        """A driver error as a TargetError: the driver's first line, the table and step, the statement."""
        if isinstance(exc, CbmError):
            return exc
        first = statement.strip().splitlines()[0][:200] if statement.strip() else ""
        where = f" in statement: {first}" if first else ""
        orig = getattr(exc, "orig", None) or exc
        text = str(orig).strip().splitlines()[0][:500] if str(orig).strip() else ""
        msg = f"{error_context(self.title, table, step)}: {type(orig).__name__}: {text}{where}"
        return TransientTargetError(msg) if self.is_transient(exc) else TargetError(msg)


def error_context(title: str, table: str | None, step: str | None) -> str:
    """``table produit, step merge_ods`` (or the target database when no table is at hand)."""
    parts = [f"table {table}" if table else f"{title} target", f"step {step}" if step else ""]
    return ", ".join(p for p in parts if p)


def connection_error(dialect: ErrorTranslation, url: str, exc: BaseException) -> CbmError:
    """A failure to connect to the target, as one line: the target (password hidden), the driver's first line,
    and what to do about it (create the database, fix the user or password, reach the server)."""
    translated = dialect.translate_error(exc, table=None, step=None)
    detail = str(translated).removeprefix(f"{error_context(dialect.title, None, None)}: ")
    msg = f"cannot connect to the target {redact(url)} (CBM_TARGET): {detail}; {connection_fix(detail, url)}"
    if not isinstance(translated, TargetError):
        return translated
    err = type(translated)(msg)
    err.connecting = True
    return err


def connection_fix(text: str, url: str) -> str:
    """What to do about a connection failure, from the driver's words (each pattern is one server's message)."""
    try:
        u = sa.engine.make_url(url)
        host, port, user, db = u.host or "localhost", u.port, u.username or "", u.database or ""
        has_host = bool(u.host) or u.get_backend_name() != "duckdb"
    except Exception:  # noqa: BLE001 - a URL that does not parse was refused before connecting
        host, port, user, db, has_host = "localhost", None, "", "", True
    server = f"{host}:{port}" if port else host
    low = text.lower()
    if re.search(r'database "[^"]*" does not exist', low):  # PostgreSQL
        return (f"create the database: createdb -h {host}{f' -p {port}' if port else ''}"
                f"{f' -U {user}' if user else ''} {db} (or CREATE DATABASE \"{db}\"), then run cbm-etl init-db")
    if "cannot open database" in low or "unknown database" in low:  # SQL Server, MySQL-like
        return f"create the database {db} (CREATE DATABASE [{db}]) or fix its name in CBM_TARGET, then cbm-etl init-db"
    if re.search(r'role "[^"]*" does not exist', low):
        return f"the user {user!r} does not exist on {server}: fix the user in CBM_TARGET, or create that login"
    if any(w in low for w in ("password", "authentication failed", "login failed", "28p01", "no password")):
        return ("wrong user or password: check the user in CBM_TARGET and its password "
                "(e.g. ${CBM_TARGET_PASSWORD} in the URL, the value in .env)")
    if not has_host:  # an embedded database file (DuckDB): its path may hold any word, no network involved
        if "lock" in low:
            return "another process holds the database file: wait for it to finish, or stop it"
        return (f"CBM_TARGET must name a database file this user can write (e.g. duckdb:///data/cbm_ods.duckdb), "
                f"not {db}")
    if any(w in low for w in ("refused", "could not connect", "timeout", "timed out", "could not translate host",
                              "name or service not known", "no route to host", "unreachable", "server closed")):
        return (f"the server {server} does not answer: check the host and port in CBM_TARGET, the firewall, "
                "and that the database server is running")
    if "can't open lib" in low or "im002" in low or "data source name not found" in low:  # ODBC
        return ("the ODBC driver named in CBM_TARGET (driver=...) is not installed: install it, or fix the name "
                "(odbcinst -q -d lists the installed drivers)")
    if "lock" in low:
        return "another process holds the database file: wait for it to finish, or stop it"
    if "io error" in low or "permission denied" in low:  # an embedded database file (DuckDB)
        return f"CBM_TARGET must name a database file this user can write (e.g. duckdb:///data/cbm_ods.duckdb), not {db}"
    return "check CBM_TARGET (host, port, database, user, password) and that the server accepts connections"
