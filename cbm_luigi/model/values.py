"""Parsing of flag values: settings text (:func:`parse_bool`, strict) and database flags (:func:`truthy`).

One list of true and false words for the whole package.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

TRUE_WORDS = ("1", "true", "yes", "on", "y")


FALSE_WORDS = ("0", "false", "no", "off", "n")


def parse_bool(text: str) -> bool:
    """``1/true/yes/on/y`` or ``0/false/no/off/n`` (any case); anything else is a ValueError."""
    low = str(text).strip().lower()
    if low in TRUE_WORDS:
        return True
    if low in FALSE_WORDS:
        return False
    raise ValueError(text)


def truthy(v: Any) -> bool:
    """A flag read from a metadata table (a boolean, a number, or text such as ``'1'``, ``'true'``, ``'t'``)."""
    if isinstance(v, str):
        return v.strip().lower() in (*TRUE_WORDS, "t")
    return bool(v)


def naive_datetime(v: Any) -> datetime | None:
    """A timestamp read from a metadata table (a datetime, or its ISO text where the driver gives text), naive."""
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.replace(tzinfo=None)
    return datetime.fromisoformat(str(v))
