"""pyarrow without the pandas import its first conversion of Python values costs.

At its first conversion of Python values (``pa.array([...])``, ``pc.equal(column, 1)``, ``pa.scalar(...)``) pyarrow
asks "is this a pandas object?" and imports pandas to answer: 0.2-0.3 s of every task process here, for a
library the data path never uses (cbm-luigi imports pandas nowhere).  While pandas is not imported no value can
be a pandas object, so :func:`hold_pandas_off` answers that first question with the import of pandas refused:
pyarrow records "no pandas" and converts as before.

Whoever imports pandas later in the process gets pyarrow's pandas integration back as it was: the first import of
pandas is watched (an import finder that removes itself), and once pandas is loaded pyarrow is asked for it again
through its own explicit path (``_pandas_api.pd``, which ``Table.to_pandas`` and ``from_pandas`` use too), which
records it.  Where pandas is already imported, or pyarrow is not installed, nothing is done.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

_lock = threading.Lock()
_held = False


class _RefusePandas(importlib.abc.MetaPathFinder):
    """An import finder that refuses ``pandas`` (only while :func:`hold_pandas_off` asks pyarrow its question)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(f"{fullname} held off by cbm_luigi.model.arrow", name=fullname)
        return None


class _WatchPandas(importlib.abc.MetaPathFinder):
    """At the first import of ``pandas``: steps aside, finds pandas as the other finders would, and wraps its
    loader so that pyarrow is told once pandas is loaded."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname != "pandas":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _ThenTellPyarrow(spec.loader)
                return spec
        return None


class _ThenTellPyarrow(importlib.abc.Loader):
    """pandas' own loader, then pyarrow asked for pandas through its explicit path (which records it)."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        created: ModuleType | None = self._loader.create_module(spec)
        return created

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        with contextlib.suppress(Exception):  # pyarrow without that path: its own lazy import as before
            import pyarrow.lib  # deferred: only once pandas is imported

            pyarrow.lib._pandas_api.pd  # noqa: B018 - the property's side effect: pandas recorded as there

    def __getattr__(self, name: str) -> Any:  # resource readers and the rest of the loader's interface
        if name == "_loader":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self._loader, name)


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
        if "pandas" in sys.modules:
            return False
        sys.meta_path.insert(0, _WatchPandas())
        return True
