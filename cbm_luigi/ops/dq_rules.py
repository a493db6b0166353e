"""Data-quality rules files: finding ``<dq dir>/<table>.yaml`` (or ``.yml`` / ``.json``), checking its shape (every
error names the file, the rule and the field) and binding each rule to the table's columns.  The evaluation is in
:mod:`cbm_luigi.ops.quality`; the schema in docs/VALIDATION.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import duckdb
import yaml

from cbm_luigi.config.options import quality_option
from cbm_luigi.errors import ConfigError, MetadataError
from cbm_luigi.model.naming import match_name
from cbm_luigi.model.specs import ColumnSpec, TableSpec, parse_lookback
from cbm_luigi.model.types import (
    BIGINT,
    BINARY,
    BOOLEAN,
    DATE,
    DECIMAL,
    FLOAT,
    INTEGER,
    STRING,
    TIMESTAMP,
    TIMESTAMP_TZ,
)

SEVERITIES = ("critical", "warning")


DIRECTIONS = ("both", "drop", "growth")


EXTENSIONS = (".yaml", ".yml", ".json")


ROW_RULES = ("not_null", "range", "allowed_values", "regex")


COMMON_FIELDS = ("type", "name", "severity", "description", "enabled", "max_failed_pct")


FILE_FIELDS = ("table", "description", "rules")


SAMPLE_ROWS = 5


_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


def dq_dir() -> Path:
    """Folder of the rules files (``CBM_DQ_DIR``, default ``config/data_quality``)."""
    return Path(quality_option("dq_dir"))


@dataclass(frozen=True)
class Rule:
    """One rule as written in the file (checked for shape; columns and values are checked by :func:`bind`)."""

    index: int  # 1-based position in the file
    name: str
    type: str
    severity: str
    fields: Mapping[str, Any]
    max_failed_pct: float = 0.0
    description: str | None = None
    path: str = ""

    def where(self, field_name: str | None = None) -> str:
        at = f"{self.path}: rule {self.index} ({self.name})"
        return f"{at}, field '{field_name}'" if field_name else at

    @property
    def column_names(self) -> tuple[str, ...]:
        if "columns" in self.fields:
            return tuple(self.fields["columns"])
        return (self.fields["column"],) if self.fields.get("column") else ()


@dataclass(frozen=True)
class RuleSet:
    path: Path
    table: str | None
    rules: tuple[Rule, ...]
    description: str | None = None


def rules_file(spec: TableSpec, folder: Path | None = None) -> Path | None:
    """The table's rules file (source name or SQL-safe name, any case, .yaml/.yml/.json), or None."""
    folder = folder if folder is not None else dq_dir()
    if not folder.is_dir():
        return None
    wanted = {spec.table_name.lower(), spec.sql_name.lower()}
    found = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in EXTENSIONS and p.stem.lower() in wanted)
    if len(found) > 1:
        raise ConfigError(
            f"table {spec.table_name}: several data-quality files in {folder}: "
            f"{', '.join(p.name for p in found)}; keep one"
        )
    return found[0] if found else None


def _fail(where: str, problem: str) -> ConfigError:
    return ConfigError(f"{where}: {problem}")


def load_rules(path: Path) -> RuleSet:
    """Read and check a rules file's shape; every error names the file, the rule and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the data-quality file: {exc}") from exc
    try:
        doc = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError carries the line and column in its text
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if isinstance(doc, list):
        doc = {"rules": doc}
    if not isinstance(doc, dict):
        raise _fail(str(path), "the file must hold a mapping with a 'rules' list (see docs/VALIDATION.md)")
    unknown = sorted(set(doc) - set(FILE_FIELDS))
    if unknown:
        raise _fail(str(path), f"unknown top-level field(s) {', '.join(map(str, unknown))}; "
                               f"allowed: {', '.join(FILE_FIELDS)}")
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise _fail(str(path), "field 'rules' must be a non-empty list of rules")
    rules = []
    names: dict[str, int] = {}
    for i, raw in enumerate(raw_rules, start=1):
        rule = _parse_rule(path, i, raw)
        if rule.name in names:
            raise _fail(rule.where("name"), f"the name is already used by rule {names[rule.name]}; names must be unique")
        names[rule.name] = i
        rules.append(rule)
    table = doc.get("table")
    if table is not None and not isinstance(table, str):
        raise _fail(str(path), "field 'table' must be a table name")
    return RuleSet(path, table, tuple(rules), doc.get("description"))


def _parse_rule(path: Path, i: int, raw: Any) -> Rule:
    at = f"{path}: rule {i}"
    if not isinstance(raw, dict):
        raise _fail(at, "must be a mapping (type: ..., column: ..., severity: ...)")
    kind = raw.get("type")
    if kind not in RULE_FIELDS:
        raise _fail(f"{at}, field 'type'", f"must be one of {', '.join(RULE_FIELDS)}, got {kind!r}")
    cols = raw.get("columns") or ([raw["column"]] if raw.get("column") else [])
    default_name = "_".join([kind, *(str(c) for c in cols)]) if cols else kind
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(f"{at}, field 'name'", f"must be 1-128 letters, digits, '_', '-', '.'; got {name!r}")
    at = f"{at} ({name})"
    allowed = set(COMMON_FIELDS) | set(RULE_FIELDS[kind])
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _fail(f"{at}, field '{unknown[0]}'",
                    f"not a field of a {kind} rule; allowed: {', '.join(sorted(allowed))}")
    severity = raw.get("severity", "warning")
    if severity not in SEVERITIES:
        raise _fail(f"{at}, field 'severity'", f"must be critical or warning, got {severity!r}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail(f"{at}, field 'enabled'", f"must be true or false, got {enabled!r}")
    pct = raw.get("max_failed_pct", 0)
    if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 <= pct <= 100:
        raise _fail(f"{at}, field 'max_failed_pct'", f"must be a number from 0 to 100, got {pct!r}")
    if "description" in raw and not isinstance(raw["description"], str | type(None)):
        raise _fail(f"{at}, field 'description'", "must be text")
    fields = {k: v for k, v in raw.items() if k not in COMMON_FIELDS}
    fields["enabled"] = enabled

    def need(key: str) -> Any:
        if fields.get(key) is None:
            raise _fail(f"{at}, field '{key}'", f"is required for a {kind} rule")
        return fields[key]

    if kind in ("not_null", "range", "allowed_values", "regex") and not isinstance(need("column"), str):
        raise _fail(f"{at}, field 'column'", "must be a column name")
    if kind == "not_null" and not isinstance(fields.get("empty_is_null", False), bool):
        raise _fail(f"{at}, field 'empty_is_null'", "must be true or false")
    if kind == "unique":
        if "column" in fields and "columns" in fields:
            raise _fail(f"{at}, field 'columns'", "give 'column' or 'columns', not both")
        cols = fields.get("columns", [fields["column"]] if "column" in fields else None)
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c for c in cols):
            raise _fail(f"{at}, field 'columns'", "must be a non-empty list of column names")
        fields["columns"] = list(cols)
        fields.pop("column", None)
    if kind == "range" and fields.get("min") is None and fields.get("max") is None:
        raise _fail(f"{at}, field 'min'", "a range rule needs 'min', 'max' or both")
    if kind == "allowed_values":
        values = need("values")
        if not isinstance(values, list) or not values or any(isinstance(v, dict | list) for v in values):
            raise _fail(f"{at}, field 'values'", "must be a non-empty list of plain values")
    if kind == "regex":
        pattern = need("pattern")
        if not isinstance(pattern, str):
            raise _fail(f"{at}, field 'pattern'", "must be text (quote it in YAML)")
        try:
            with duckdb.connect() as check:
                check.execute("SELECT regexp_full_match('', ?)", [pattern])
        except duckdb.Error as exc:
            raise _fail(f"{at}, field 'pattern'", f"is not a valid RE2 regular expression: {exc}") from None
    if kind == "freshness":
        if "column" in fields and not isinstance(fields["column"], str):
            raise _fail(f"{at}, field 'column'", "must be a column name")
        try:
            age = parse_lookback(str(need("max_age")))
        except MetadataError:
            age = timedelta(0)
        if age <= timedelta(0):
            raise _fail(f"{at}, field 'max_age'", f"must be a duration such as 26h, 2d or 90m; got {fields['max_age']!r}")
        fields["max_age"] = age
    if kind == "volume":
        change = need("max_change_pct")
        if isinstance(change, bool) or not isinstance(change, int | float) or change <= 0:
            raise _fail(f"{at}, field 'max_change_pct'", f"must be a number above 0, got {change!r}")
        min_prev = fields.setdefault("min_previous_rows", 1)
        if isinstance(min_prev, bool) or not isinstance(min_prev, int) or min_prev < 0:
            raise _fail(f"{at}, field 'min_previous_rows'", f"must be a whole number >= 0, got {min_prev!r}")
        if fields.setdefault("direction", "both") not in DIRECTIONS:
            raise _fail(f"{at}, field 'direction'", f"must be one of {', '.join(DIRECTIONS)}")
    return Rule(i, name, kind, severity, fields, float(pct), raw.get("description"), str(path))


@dataclass(frozen=True)
class BoundRule:
    rule: Rule
    columns: tuple[ColumnSpec, ...]
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def column_label(self) -> str | None:
        return ",".join(c.column_name for c in self.columns) or None


def bind(ruleset: RuleSet, spec: TableSpec) -> list[BoundRule]:
    """Resolve columns and convert values to the columns' types; enabled rules only."""
    if ruleset.table and match_name(ruleset.table, [(spec.table_name, spec.sql_name)]) is None:
        raise ConfigError(f"{ruleset.path}: field 'table' says {ruleset.table!r}, but the file is used for "
                          f"table {spec.table_name}; fix the field or rename the file")
    pairs = [(c.column_name, c.sql_name) for c in spec.columns]
    by_name = {c.column_name: c for c in spec.columns}
    out = []
    for rule in ruleset.rules:
        if not rule.fields.get("enabled", True):
            continue
        key = "columns" if rule.type == "unique" else "column"
        names = list(rule.column_names)
        if rule.type == "freshness" and not names:
            if not spec.date_modif_col:
                raise _fail(rule.where("column"), f"table {spec.table_name} has no DateModifCol; name the column")
            names = [spec.column(spec.date_modif_col).column_name]
        cols = []
        for n in names:
            found = match_name(n, pairs)
            if found is None:
                raise _fail(rule.where(key), f"{n!r} is not a column of {spec.table_name} "
                                             f"(columns: {', '.join(c.column_name for c in spec.columns)})")
            col = by_name[found]
            if col.is_excluded:
                raise _fail(rule.where(key), f"column {found!r} is excluded (IsExcluded or gone from the source), "
                                             "so it is not in the extract; remove the rule or include the column")
            cols.append(col)
        params: dict[str, Any] = {}
        if rule.type == "range":
            for k in ("min", "max"):
                if rule.fields.get(k) is not None:
                    params[k] = _convert(rule.fields[k], cols[0], rule.where(k))
            if "min" in params and "max" in params and params["min"] > params["max"]:
                raise _fail(rule.where("max"), f"max {params['max']!r} is below min {params['min']!r}")
        elif rule.type == "allowed_values":
            params["values"] = [_convert(v, cols[0], rule.where("values")) for v in rule.fields["values"]]
        elif rule.type == "regex" and cols[0].logical_type != STRING:
            raise _fail(rule.where("column"), f"regex rules apply to text columns; {cols[0].column_name} is "
                                              f"{cols[0].logical_type}")
        elif rule.type == "freshness" and cols[0].logical_type not in (DATE, TIMESTAMP, TIMESTAMP_TZ):
            raise _fail(rule.where("column"), f"freshness needs a date or timestamp column; "
                                              f"{cols[0].column_name} is {cols[0].logical_type}")
        elif rule.type in ("range", "allowed_values") and cols[0].logical_type == BINARY:
            raise _fail(rule.where("column"), "binary columns cannot be compared to values")
        out.append(BoundRule(rule, tuple(cols), params))
    return out


def _convert(value: Any, col: ColumnSpec, where: str) -> Any:
    """A value from the rules file in the column's type, or a ConfigError saying what is expected."""
    t = col.logical_type
    try:
        if t == STRING:
            if isinstance(value, bool):
                raise ValueError("a boolean: YAML reads yes/no/on/off/true/false as booleans; quote it ('yes')")
            if isinstance(value, date | datetime):
                raise ValueError("a date: quote it to compare text")
            return str(value)
        if isinstance(value, bool) and t != BOOLEAN:
            raise ValueError("a boolean")
        if t in (INTEGER, BIGINT):
            d = Decimal(str(value))
            if d != d.to_integral_value():
                raise ValueError("not a whole number")
            return int(d)
        if t == DECIMAL:
            return Decimal(str(value))
        if t == FLOAT:
            return float(value)
        if t == BOOLEAN:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes"):
                return True
            if text in ("0", "false", "no"):
                return False
            raise ValueError("not true or false")
        if t == DATE:
            if isinstance(value, datetime):
                return value.date()
            return value if isinstance(value, date) else date.fromisoformat(str(value))
        if t in (TIMESTAMP, TIMESTAMP_TZ):
            if isinstance(value, datetime):
                return value
            if isinstance(value, date):
                return datetime(value.year, value.month, value.day)
            return datetime.fromisoformat(str(value))
    except (ValueError, InvalidOperation, TypeError) as exc:
        raise _fail(where, f"{value!r} does not fit column {col.column_name} ({t}): {exc}") from None
    raise _fail(where, f"column {col.column_name} ({t}) cannot be compared to values")


RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "not_null": ("column", "empty_is_null"),
    "unique": ("column", "columns"),
    "range": ("column", "min", "max"),
    "allowed_values": ("column", "values"),
    "regex": ("column", "pattern"),
    "freshness": ("column", "max_age"),
    "volume": ("max_change_pct", "min_previous_rows", "direction"),
}
