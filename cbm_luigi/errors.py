"""The exception family of cbm-luigi.

Every error raised on purpose by the package is a :class:`CbmError`.  Driver errors are translated in one
place per layer (``raise ... from``) so that messages name the table, the step and the failing statement, and
so that retry logic can ask one question: :attr:`CbmError.transient`.
"""

from __future__ import annotations

import configparser
import re


class CbmError(Exception):
    """Base class.  ``transient`` tells whether retrying the same work may succeed; ``exit_code`` is what
    ``cbm-etl`` exits with when the error reaches it (README: 2 configuration, connection, metadata; 1 a table)."""

    transient: bool = False
    exit_code: int = 2


class ConfigError(CbmError):
    """A setting is missing or wrong (names the setting and how to fix it)."""


class MetadataError(CbmError):
    """config.ETL_Tables / config.ETL_Columns content is missing or inconsistent."""


class SourceError(CbmError):
    """Reading the source failed."""


class TargetError(CbmError):
    """Writing to the target failed.  ``connecting``: the connection itself failed (no statement ran)."""

    connecting: bool = False


class DataError(CbmError):
    """The extracted data cannot be loaded as it is (duplicate keys, NULL keys, overflow)."""

    exit_code = 1


class TransientError(CbmError):
    """Mixin-style marker for errors worth retrying (connection lost, deadlock, lock timeout)."""

    transient = True


class TransientSourceError(SourceError, TransientError):
    """The source is temporarily unavailable."""


class TransientTargetError(TargetError, TransientError):
    """The target is temporarily unavailable or the statement was chosen as a deadlock victim."""


_SECRET_WORDS = re.compile(r"(?i)pass|pwd|secret|token|webhook|key")
_MISSING_ENVVAR = re.compile(r"nonexisting environment variable (\S+?)\.? Section")


def _shown(line: str) -> str:
    """A luigi.cfg line, quoted, for a message; not shown when it may hold a secret."""
    line = line.strip().strip("'\"").replace("\\n", "").strip()
    return "" if not line or _SECRET_WORDS.search(line) else f" ({line[:60]!r})"


def config_file_error(exc: configparser.Error) -> ConfigError:
    """A luigi.cfg that cannot be read (garbled line, option set twice, bad ``%`` or ``${NAME}``) as a ConfigError
    naming the file, the line or the option, and the fix.

    Here (not in :mod:`cbm_luigi.config`) because the file is parsed by ``import luigi`` itself: the translation
    must not import luigi again."""
    src = getattr(exc, "source", None) or "luigi.cfg"
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return ConfigError(f"luigi.cfg {src} line {exc.lineno}{_shown(str(exc.line))}: an option before any "
                           "[section]: put it under its section (e.g. [cbm]) or remove it")
    if isinstance(exc, configparser.ParsingError):
        lineno, line = exc.errors[0] if exc.errors else (0, "")
        more = f" (and {len(exc.errors) - 1} more line(s))" if len(exc.errors) > 1 else ""
        return ConfigError(f"luigi.cfg {src} line {lineno}{_shown(str(line))}{more} is neither a [section] nor "
                           "'option = value': fix the line, or comment it out with '#'")
    if isinstance(exc, configparser.DuplicateOptionError):
        return ConfigError(f"luigi.cfg {src} line {exc.lineno}: option {exc.option!r} is set twice in "
                           f"[{exc.section}]: keep one")
    if isinstance(exc, configparser.DuplicateSectionError):
        return ConfigError(f"luigi.cfg {src} line {exc.lineno}: section [{exc.section}] appears twice: merge them")
    if isinstance(exc, configparser.InterpolationError):
        where = f"luigi.cfg [{exc.section}] {exc.option}"
        if m := _MISSING_ENVVAR.search(exc.message):
            name = m.group(1)
            return ConfigError(f"{where} refers to ${{{name}}}, which is not set: export {name}=... or put it "
                               "in .env")
        return ConfigError(f"{where} cannot be read ({type(exc).__name__}): write a literal '%' as '%%'")
    first = (str(exc).strip().splitlines() or [""])[0]
    return ConfigError(f"luigi.cfg cannot be read: {type(exc).__name__}: {first}")
