"""Driver errors of a destination: which are transient, and their translation into a TargetError that names the
table, the step and the statement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
