"""The operations options: one table of defaults, read before a run starts."""

from __future__ import annotations

import ast
from pathlib import Path

from cbm_luigi.config.options import OPS_DEFAULTS

PACKAGE = Path(__file__).resolve().parents[2] / "cbm_luigi"


def test_every_cbm_option_call_uses_a_known_key_and_its_default() -> None:
    """check_ops_options() validates every [cbm_ops] option only if the table lists them all, with their defaults."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                    "cbm_option", "_option") and len(node.args) >= 2 and isinstance(node.args[0], ast.Constant):
                key, default = node.args[0].value, eval(compile(ast.Expression(node.args[1]), path.name, "eval"))
                found.append(key)
                assert key in OPS_DEFAULTS, f"{path.name}: [cbm_ops] {key} is missing from OPS_DEFAULTS"
                assert OPS_DEFAULTS[key] == default, f"{path.name}: [cbm_ops] {key} defaults to {default!r} there"
    assert len(set(found)) >= 10
