"""pyarrow without the pandas import its first conversion of Python values costs.

At its first conversion of Python values (``pa.array([...])``, ``pc.equal(column, 1)``, ``pa.scalar(...)``) pyarrow
asks "is this a pandas object?" and imports pandas to answer: 0.2-0.3 s of every task process here, for a
library the data path never uses (cbm-luigi imports pandas nowhere).  While pandas is not imported no value can
be a pandas object, so :func:`hold_pandas_off` answers that first question with the import of pandas refused:
pyarrow records "no pandas" and converts as before.  Its explicit pandas paths (``Table.to_pandas``,
``Table.from_pandas``) still work: they try the import again, which then succeeds.  Where pandas is already
imported, or pyarrow is not installed, nothing is done.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

_lock = threading.Lock()
_held = False


class _RefusePandas(importlib.abc.MetaPathFinder):
    """An import finder that refuses ``pandas`` (only while :func:`hold_pandas_off` asks pyarrow its question)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(f"{fullname} held off by cbm_luigi.model.arrow", name=fullname)
        return None


def hold_pandas_off() -> bool:
    """pyarrow's "is pandas there?" answered "no" without importing pandas, once per process; True when done now."""
    global _held
    with _lock:
        if _held or "pandas" in sys.modules:
            return False
        _held = True
        try:
            import pyarrow as pa  # deferred: callers that never touch Arrow do not pay for its import
        except ImportError:
            return False
        finder = _RefusePandas()
        sys.meta_path.insert(0, finder)
        try:
            pa.array([0])  # pyarrow's first pandas check, answered while pandas cannot be imported
        finally:
            sys.meta_path.remove(finder)
        return "pandas" not in sys.modules
