"""The layer rule of docs/ARCHITECTURE.md, enforced on the package's source.

Layers, lowest first; a module may import from its own layer and the layers below it, never above:

    errors, model  <  config  <  destinations  <  store  <  pipeline  <  alerts  <  ops  <  tasks  <  demo
    <  commands  <  cli

Also: no import cycle between modules (at import time), and an import inside a function is allowed only with a
``# deferred: <why>`` comment on its line (start-up time of the command line, an optional driver).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "cbm_luigi"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors", "model"),
    ("config",),
    ("destinations",),
    ("store",),
    ("pipeline",),
    ("alerts",),
    ("ops",),
    ("tasks",),
    ("demo",),
    ("commands",),
    ("cli",),
)


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: its top-level package {top!r} is in no layer of LAYERS; add it")


@dataclass(frozen=True)
class Import:
    module: str  # importing module
    target: str  # imported cbm_luigi module
    line: int
    deferred: bool  # inside a function
    type_only: bool  # under `if TYPE_CHECKING:`
    comment: str


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def known_modules() -> set[str]:
    return {module_name(p) for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, modules: set[str]) -> Iterator[Import]:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def walk(node: ast.AST, in_function: bool, type_only: bool) -> Iterator[tuple[ast.AST, bool, bool]]:
        for child in ast.iter_child_nodes(node):
            fn = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            tc = type_only or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function, type_only
            yield from walk(child, fn, tc)

    for node, deferred, type_only in walk(tree, False, False):
        comment = " ".join(ln.partition("#")[2].strip() for ln in lines[node.lineno - 1:node.end_lineno]).strip()
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            assert isinstance(node, ast.ImportFrom)
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for t in targets:
            if t.startswith("cbm_luigi"):
                while t not in modules and "." in t:
                    t = t.rpartition(".")[0]
            yield Import(name, t, node.lineno, deferred, type_only, comment)


def all_imports() -> list[Import]:
    modules = known_modules()
    return [i for p in sorted(PACKAGE.rglob("*.py")) for i in imports_of(p, modules)]


def test_no_module_imports_a_higher_layer() -> None:
    wrong = [
        f"{i.module}:{i.line} imports {i.target} (layer {LAYERS[layer_of(i.target)][0]} is above "
        f"{LAYERS[layer_of(i.module)][0]})"
        for i in all_imports()
        if i.target.startswith("cbm_luigi") and layer_of(i.target) > layer_of(i.module)
    ]
    assert not wrong, "layer rule broken (docs/ARCHITECTURE.md):\n" + "\n".join(wrong)


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for i in all_imports():
        if i.target.startswith("cbm_luigi") and not i.deferred and not i.type_only and i.target != i.module:
            # a package's __init__ importing its own submodules is how a package exports them
            if i.target.startswith(i.module + ".") and i.module != "cbm_luigi":
                continue
            graph.setdefault(i.module, set()).add(i.target)
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        seen[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if seen.get(n) == 1:
                return [*stack[stack.index(n):], n]
            if n not in seen and (cycle := visit(n)):
                return cycle
        seen[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in seen and (cycle := visit(m)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_imports_inside_functions_say_why() -> None:
    silent = [f"{i.module}:{i.line} imports {i.target} inside a function without '# deferred: <why>'"
              for i in all_imports() if i.deferred and "deferred:" not in i.comment]
    assert not silent, "\n".join(silent)


def test_every_package_module_is_in_a_layer() -> None:
    for m in known_modules():
        layer_of(m)


BOOKKEEPING_TABLES = ("ETL_Tables", "ETL_Columns", "ETL_Dependencies", "ETL_Log", "ETL_Markers",
                      "ETL_StagingState", "ETL_Alerts", "Validation_Log", "DataQuality_Log", "vw_")
DESCRIPTIONS = {"ETL_TABLES", "ETL_COLUMNS", "ETL_DEPENDENCIES", "ETL_LOG", "ETL_MARKERS", "ETL_STAGING_STATE",
                "ETL_ALERTS", "VALIDATION_LOG", "DATA_QUALITY_LOG"}
SQL_WORDS = ("SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM", " FROM ")  # upper case: SQL, not prose


def test_only_the_store_writes_sql_on_config_and_etl_tables() -> None:
    """SQL on config.* and etl.* lives in cbm_luigi/store/ (one owner: renaming a column touches one module)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("store/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
        for node in ast.walk(tree):
            if id(node) in docstrings:
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cbm_luigi.store.schema"):
                used = sorted({a.name for a in node.names} & DESCRIPTIONS)
                if used:
                    found.append(f"{rel}:{node.lineno} uses the table description(s) {', '.join(used)}")
            if isinstance(node, ast.JoinedStr | ast.Constant):
                text = ast.unparse(node) if isinstance(node, ast.JoinedStr) else node.value
                if isinstance(text, str) and any(w in text for w in SQL_WORDS) and \
                        any(t in text for t in BOOKKEEPING_TABLES):
                    found.append(f"{rel}:{node.lineno} SQL on a bookkeeping table: {text[:80]!r}")
    assert not found, "SQL on config.*/etl.* outside cbm_luigi/store/:\n" + "\n".join(found)
