"""The exception family of cbm-luigi.

Every error raised on purpose by the package is a :class:`CbmError`.  Driver errors are translated in one
place per layer (``raise ... from``) so that messages name the table, the step and the failing statement, and
so that retry logic can ask one question: :attr:`CbmError.transient`.
"""

from __future__ import annotations


class CbmError(Exception):
    """Base class.  ``transient`` tells whether retrying the same work may succeed."""

    transient: bool = False


class ConfigError(CbmError):
    """A setting is missing or wrong (names the setting and how to fix it)."""


class MetadataError(CbmError):
    """config.ETL_Tables / config.ETL_Columns content is missing or inconsistent."""


class SourceError(CbmError):
    """Reading the source failed."""


class TargetError(CbmError):
    """Writing to the target failed."""


class DataError(CbmError):
    """The extracted data cannot be loaded as it is (duplicate keys, NULL keys, overflow)."""


class TransientError(CbmError):
    """Mixin-style marker for errors worth retrying (connection lost, deadlock, lock timeout)."""

    transient = True


class TransientSourceError(SourceError, TransientError):
    """The source is temporarily unavailable."""


class TransientTargetError(TargetError, TransientError):
    """The target is temporarily unavailable or the statement was chosen as a deadlock victim."""
