"""A deterministic, Progress-like ERP demo dataset (five ``PUB`` tables) and a deterministic "day of changes".

It feeds the ``cbm-etl demo`` command (an SQLite file) and the integration tests (a PostgreSQL schema,
``"PUB"`` by default, later read over ODBC as a Progress stand-in).

Tables, in their Progress source form (identifiers with ``-``, ``#``, ``$``, ``%``, ``&`` and reserved words
are kept as-is and always double quoted; every value is bound, never inlined):

============  ==========  ===================  =========  ========  ========  ========
table         rows        primary key          modif col  kind      priority  lookback
============  ==========  ===================  =========  ========  ========  ========
client        1,500       cod_cli              dat_mod    dim       critical  1d
                                               (date)
fournis       300         cod_fou (varchar)    dat_mod    dim       high      1d
produit       2,000       cod_pro              dat_mod    dim       critical  1h
hisprixa      3,000       cod_pro, dat_eff     dat_mod    fact      normal    1d
lignecli      4,000       num_cde, num_lig     dat_mod    fact      high      12h
============  ==========  ===================  =========  ========  ========  ========

Every value derives from ``random.Random`` seeded with the ``seed`` argument (one generator per table), never
from the clock.  Modification timestamps are spread over the 30 days before ``reference_ts``.

Rows are first generated as *neutral* Python values (``int``, ``str``, ``Decimal``, ``date``, ``datetime``,
``bool``, ``float``, ``None``); only the SQL execution differs per backend:

* SQLite (stdlib ``sqlite3``, ``?`` placeholders): tables in the ``main`` database, unqualified.  Declared
  types are the Progress-like ones (``DECIMAL(18,6)``, ``VARCHAR(60)``, ``DATE``, ``TIMESTAMP``,
  ``BOOLEAN``...) so a catalog reader (``PRAGMA table_info``) sees them.  Dates are bound as
  ``'YYYY-MM-DD'`` text, timestamps as ``'YYYY-MM-DD HH:MM:SS'`` text, booleans as 0/1 and decimals as text
  with exact digits.  Note that SQLite gives ``DECIMAL``/``BOOLEAN``/``DATE`` columns NUMERIC affinity: a
  decimal bound as ``'12.500000'`` is *stored* as REAL 12.5 (or INTEGER 12 for ``'12.00'``).  All generated
  decimals have at most 15 significant digits, so quantizing what is read back to the declared scale gives
  the exact generated value (see :func:`sqlite_to_neutral`).
* PostgreSQL (psycopg 3, ``%s`` placeholders): real types (``numeric(p,s)``, ``date``, ``timestamp``,
  ``boolean``, ``double precision``, ``varchar(n)``, ``char(n)``, ``integer``) with primary-key constraints,
  in the given schema.  Only the five demo tables of that schema are dropped and recreated.

Both backends also get an index on each table's modification column.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import psycopg

from cbm_luigi.model.naming import quote_ident as _quote

__all__ = [
    "DEFAULT_REFERENCE_TS",
    "DEMO_TABLES",
    "ChangeSummary",
    "ColumnKind",
    "DemoColumn",
    "DemoTable",
    "Key",
    "Row",
    "TableChanges",
    "Value",
    "apply_postgres_changes",
    "apply_sqlite_changes",
    "create_postgres_source",
    "create_sqlite_source",
    "demo_table",
    "generate_demo_rows",
    "progress_extent",
    "sqlite_to_neutral",
    "to_sqlite_value",
]

DEFAULT_REFERENCE_TS = datetime(2026, 1, 15, 12, 0, 0)
"""Default reference datetime: generated modification timestamps lie in the 30 days before it."""

MODIF_SPREAD_DAYS = 30
UPDATE_FRACTION = 0.02
INSERT_FRACTION = 0.005

Value = int | str | Decimal | date | datetime | bool | float | None
Row = dict[str, Value]
Key = tuple[Value, ...]
ColumnKind = Literal["integer", "varchar", "char", "decimal", "date", "timestamp", "boolean", "double"]
Priority = Literal["critical", "high", "normal"]
ModifPrecision = Literal["date", "datetime"]


# --------------------------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class DemoColumn:
    """One column in a neutral type, rendered per backend by :attr:`sqlite_type` / :attr:`postgres_type`."""

    name: str
    kind: ColumnKind
    length: int | None = None  # varchar / char
    precision: int | None = None  # decimal
    scale: int | None = None  # decimal
    nullable: bool = True

    @property
    def sqlite_type(self) -> str:
        """Declared type in SQLite (Progress-like spelling, visible through ``PRAGMA table_info``)."""
        return {
            "integer": "INTEGER",
            "varchar": f"VARCHAR({self.length})",
            "char": f"CHAR({self.length})",
            "decimal": f"DECIMAL({self.precision},{self.scale})",
            "date": "DATE",
            "timestamp": "TIMESTAMP",
            "boolean": "BOOLEAN",
            "double": "DOUBLE",
        }[self.kind]

    @property
    def postgres_type(self) -> str:
        """Type in PostgreSQL."""
        return {
            "integer": "integer",
            "varchar": f"varchar({self.length})",
            "char": f"char({self.length})",
            "decimal": f"numeric({self.precision},{self.scale})",
            "date": "date",
            "timestamp": "timestamp",
            "boolean": "boolean",
            "double": "double precision",
        }[self.kind]


@dataclass(frozen=True)
class DemoTable:
    """One demo table and the ETL settings it is meant to be loaded with."""

    name: str
    columns: tuple[DemoColumn, ...]
    primary_key: tuple[str, ...]
    date_modif_col: str
    date_modif_precision: ModifPrecision
    approx_rows: int
    is_dimension: bool
    priority: Priority
    lookback: str

    @property
    def is_fact(self) -> bool:
        return not self.is_dimension

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> DemoColumn:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")

    def row_count(self, scale: float = 1.0) -> int:
        """Rows created for ``scale`` (at least one)."""
        return max(1, round(self.approx_rows * scale))


def _int(name: str, nullable: bool = True) -> DemoColumn:
    return DemoColumn(name, "integer", nullable=nullable)


def _vc(name: str, length: int, nullable: bool = True) -> DemoColumn:
    return DemoColumn(name, "varchar", length=length, nullable=nullable)


def _ch(name: str, length: int) -> DemoColumn:
    return DemoColumn(name, "char", length=length)


def _dec(name: str, precision: int, scale: int) -> DemoColumn:
    return DemoColumn(name, "decimal", precision=precision, scale=scale)


def _date(name: str, nullable: bool = True) -> DemoColumn:
    return DemoColumn(name, "date", nullable=nullable)


def _ts(name: str) -> DemoColumn:
    return DemoColumn(name, "timestamp")


DEMO_TABLES: tuple[DemoTable, ...] = (
    DemoTable(
        name="client",
        columns=(
            _int("cod_cli", nullable=False),
            _vc("nom", 60),
            _vc("adr-1", 60),
            _vc("code-postal", 10),
            _vc("ville", 40),
            _ch("pays", 2),
            _vc("e-mail", 80),
            _vc("order", 20),
            _vc("user", 20),
            _dec("credit-max", 15, 2),
            DemoColumn("actif", "boolean"),
            _date("dat_cre"),
            _date("dat_mod"),
        ),
        primary_key=("cod_cli",),
        date_modif_col="dat_mod",
        date_modif_precision="date",
        approx_rows=1500,
        is_dimension=True,
        priority="critical",
        lookback="1d",
    ),
    DemoTable(
        name="fournis",
        columns=(
            _vc("cod_fou", 10, nullable=False),
            _vc("raison-soc", 60),
            _vc("tel#", 20),
            _dec("taux$", 9, 4),
            _dec("remise%", 5, 2),
            _vc("note&comment", 200),
            _ts("dat_mod"),
        ),
        primary_key=("cod_fou",),
        date_modif_col="dat_mod",
        date_modif_precision="datetime",
        approx_rows=300,
        is_dimension=True,
        priority="high",
        lookback="1d",
    ),
    DemoTable(
        name="produit",
        columns=(
            _int("cod_pro", nullable=False),
            _vc("designation", 120),
            _vc("gencod-v", 20),
            _vc("cod_fou", 10),
            _dec("prix-achat", 18, 6),
            _dec("prix-vente", 18, 4),
            DemoColumn("poids", "double"),
            _int("qte-stock"),
            _vc("select", 10),
            _ts("dat_mod"),
            _vc("lib-ext", 200),
        ),
        primary_key=("cod_pro",),
        date_modif_col="dat_mod",
        date_modif_precision="datetime",
        approx_rows=2000,
        is_dimension=True,
        priority="critical",
        lookback="1h",
    ),
    DemoTable(
        name="hisprixa",
        columns=(
            _int("cod_pro", nullable=False),
            _date("dat_eff", nullable=False),
            _dec("prix", 18, 6),
            _ch("devise", 3),
            _ts("dat_mod"),
        ),
        primary_key=("cod_pro", "dat_eff"),
        date_modif_col="dat_mod",
        date_modif_precision="datetime",
        approx_rows=3000,
        is_dimension=False,
        priority="normal",
        lookback="1d",
    ),
    DemoTable(
        name="lignecli",
        columns=(
            _int("num_cde", nullable=False),
            _int("num_lig", nullable=False),
            _int("cod_cli"),
            _int("cod_pro"),
            _dec("qte", 12, 3),
            _dec("prix-u", 18, 6),
            _date("dat_liv"),
            _ts("dat_mod"),
        ),
        primary_key=("num_cde", "num_lig"),
        date_modif_col="dat_mod",
        date_modif_precision="datetime",
        approx_rows=4000,
        is_dimension=False,
        priority="high",
        lookback="12h",
    ),
)

# The business value changed by apply_*_changes, per table (always a decimal column).
_UPDATED_COLUMN: Mapping[str, str] = {
    "client": "credit-max",
    "fournis": "remise%",
    "produit": "prix-vente",
    "hisprixa": "prix",
    "lignecli": "qte",
}
# Generation order: referenced tables first.
_GENERATION_ORDER = ("fournis", "client", "produit", "hisprixa", "lignecli")


def demo_table(name: str) -> DemoTable:
    """The :data:`DEMO_TABLES` entry called ``name``."""
    for table in DEMO_TABLES:
        if table.name == name:
            return table
    raise KeyError(f"no demo table {name!r}")


# ------------------------------------------------------------------------------------------- value pools

_FIRST_NAMES = (
    "Jean", "Marie", "Émile", "Zoë", "François", "Jürgen", "Ærø", "Øyvind", "Hélène", "José",
    "Wei", "Chloé", "Björn", "Noël", "Agnès", "Lukas", "Inès", "Grégoire", "Sébastien", "Anaïs",
)  # fmt: skip
_LAST_NAMES = (
    "Dupont", "Martin", "Lefèvre", "Müller", "Weiß", "Straße", "Ñúñez", "O'Brien", "Durand", "Bernard",
    "Schröder", "Łukasiewicz", "王", "李小龙", "Petit", "Moreau", "Garçon", "D'Artagnan", "Rousseau", "Fabre",
)  # fmt: skip
_COMPANIES = (
    "SARL {n}", "{n} & Fils", "Établissements {n}", "{n} GmbH", "中文贸易有限公司 {n}", "Café ☕ {n}",
    "{n} 🚚 Logistique", "Groß- und Außenhandel {n}", "{n} \"Le Meilleur\"", "SA {n}",
)  # fmt: skip
_STREETS = (
    "rue de la Paix", "avenue Foch", "boulevard Haussmann", "Königsallee", "Bahnhofstraße",
    "chemin des Écoliers", "place d'Armes", "南京路", "impasse du Moulin", "quai de Saône",
)  # fmt: skip
_CITIES = (
    ("Paris", "FR"), ("Lyon", "FR"), ("Besançon", "FR"), ("Orléans", "FR"), ("Saint-Étienne", "FR"),
    ("Bruxelles", "BE"), ("Liège", "BE"), ("Zürich", "CH"), ("Genève", "CH"), ("Köln", "DE"),
    ("München", "DE"), ("上海", "CN"), ("北京", "CN"), ("New York", "US"), ("São Paulo", "BR"),
)  # fmt: skip
_USERS = ("admin", "jdupont", "mmüller", "syst", "zhang.wei", "batch", "")
_PRODUCT_NOUNS = (
    "Vis", "Écrou", "Rondelle", "Câble", "Tuyau", "Joint", "Moteur", "Pompe", "Filtre", "Clé",
    "Ressort", "Courroie", "Roulement", "Vanne", "Capteur",
)  # fmt: skip
_PRODUCT_ADJS = ("inox", "acier", "laiton", "PVC", "renforcé", "haute pression", "Ø 12 mm", "Größe L", '1/2"')
_SELECT_VALUES: tuple[str | None, ...] = ("A", "B", "C", "X-1", "", None)
_EXTENT_ITEMS: tuple[str | None, ...] = ("rouge", "vert", "bleu", None, "a;b", "x~y", "", "été", "50%")
_NOTES: tuple[str | None, ...] = (
    None, "", "Livraison « express »; paiement 30 j", 'Dit "urgent" au téléphone', "ligne 1\nligne 2",
    "C:\\dossier\\note.txt", "100% fiable & rapide", "Transporteur 🚚 habituel", "Tab\tséparé",
    "Fournisseur historique (depuis 1987)", "ß & 中文 mélangés",
)  # fmt: skip
_CURRENCIES = ("EUR", "EUR", "EUR", "USD", "CHF", "CNY")


# ---------------------------------------------------------------------------------------- row generation


def _table_rng(seed: int, table: str, purpose: str = "create") -> random.Random:
    return random.Random(f"cbm-demo:{purpose}:{seed}:{table}")


def _before(rng: random.Random, ref: datetime, days: int = MODIF_SPREAD_DAYS) -> datetime:
    return ref - timedelta(seconds=rng.randint(1, days * 86400))


def _dec_value(rng: random.Random, low: int, high: int, scale: int) -> Decimal:
    """A decimal with exactly ``scale`` places, ``low`` and ``high`` given in units of the last place."""
    return Decimal(rng.randint(low, high)).scaleb(-scale)


def _maybe(rng: random.Random, value: str, p_null: float, p_empty: float) -> str | None:
    draw = rng.random()
    if draw < p_null:
        return None
    if draw < p_null + p_empty:
        return ""
    return value


def _company(rng: random.Random) -> str:
    return rng.choice(_COMPANIES).format(n=rng.choice(_LAST_NAMES))[:60]


def progress_extent(items: Sequence[str | None]) -> str:
    """Join array elements the way Progress SQL returns an extent: ``;``-separated, ``~`` escapes, ``?``
    for unknown (``None``)."""
    parts = []
    for item in items:
        if item is None:
            parts.append("?")
        else:
            parts.append(item.replace("~", "~~").replace(";", "~;"))
    return ";".join(parts)


def _client_row(rng: random.Random, cod_cli: int, ref: datetime) -> Row:
    nom = _company(rng) if rng.random() < 0.3 else f"{rng.choice(_LAST_NAMES)} {rng.choice(_FIRST_NAMES)}"
    ville, pays = rng.choice(_CITIES)
    credit = None if rng.random() < 0.1 else _dec_value(rng, 0, 50_000_000, 2)
    dat_mod = _before(rng, ref).date()
    row: Row = {
        "cod_cli": cod_cli,
        "nom": nom,
        "adr-1": _maybe(rng, f"{rng.randint(1, 250)} {rng.choice(_STREETS)}", 0.03, 0.02),
        "code-postal": _maybe(rng, f"{rng.randint(1000, 99999):05d}", 0.03, 0.03),
        "ville": ville,
        "pays": pays,
        "e-mail": _maybe(rng, f"contact{cod_cli}@client-{rng.randint(1, 400)}.example", 0.05, 0.05),
        "order": None if rng.random() < 0.1 else f"T{rng.randint(1, 99):02d}",
        "user": rng.choice(_USERS),
        "credit-max": credit,
        "actif": rng.random() < 0.9,
        "dat_cre": dat_mod - timedelta(days=rng.randint(0, 3650)),
        "dat_mod": dat_mod,
    }
    return row


def _fournis_row(rng: random.Random, cod_fou: str, ref: datetime) -> Row:
    return {
        "cod_fou": cod_fou,
        "raison-soc": _company(rng),
        "tel#": None if rng.random() < 0.05 else f"+33 {rng.randint(1, 9)} {rng.randint(0, 99_99_99_99):08d}",
        "taux$": Decimal("1.0000") if rng.random() < 0.6 else _dec_value(rng, 5_000, 20_000, 4),
        "remise%": _dec_value(rng, 0, 3_000, 2),
        "note&comment": rng.choice(_NOTES),
        "dat_mod": _before(rng, ref),
    }


def _produit_row(rng: random.Random, cod_pro: int, ref: datetime, fournis: Sequence[str]) -> Row:
    prix_achat = _dec_value(rng, 1, 99_999_999_999, 6)  # up to 99999.999999 (11 significant digits)
    margin = Decimal(rng.randint(105, 250)) / 100
    extent = None
    if rng.random() < 0.3:
        extent = progress_extent([rng.choice(_EXTENT_ITEMS) for _ in range(rng.randint(2, 5))])
    return {
        "cod_pro": cod_pro,
        "designation": f"{rng.choice(_PRODUCT_NOUNS)} {rng.choice(_PRODUCT_ADJS)} n°{cod_pro}",
        "gencod-v": None if rng.random() < 0.05 else f"{rng.randint(0, 10**13 - 1):013d}",
        "cod_fou": rng.choice(fournis) if fournis else None,
        "prix-achat": prix_achat,
        "prix-vente": (prix_achat * margin).quantize(Decimal("0.0001")),
        "poids": None if rng.random() < 0.05 else round(rng.uniform(0.001, 250.0), 3),
        "qte-stock": rng.randint(-20, 5000),
        "select": rng.choice(_SELECT_VALUES),
        "dat_mod": _before(rng, ref),
        "lib-ext": extent,
    }


def _hisprixa_row(rng: random.Random, cod_pro: int, dat_eff: date, ref: datetime) -> Row:
    return {
        "cod_pro": cod_pro,
        "dat_eff": dat_eff,
        "prix": _dec_value(rng, 1, 9_999_999_999, 6),
        "devise": rng.choice(_CURRENCIES),
        "dat_mod": _before(rng, ref),
    }


def _lignecli_order(
    rng: random.Random,
    num_cde: int,
    lines: int,
    ref: datetime,
    clients: Sequence[int],
    produits: Sequence[int],
) -> list[Row]:
    cod_cli = rng.choice(clients) if clients else None
    order_day = _before(rng, ref).date()
    rows: list[Row] = []
    for num_lig in range(1, lines + 1):
        rows.append(
            {
                "num_cde": num_cde,
                "num_lig": num_lig,
                "cod_cli": cod_cli,
                "cod_pro": rng.choice(produits) if produits else None,
                "qte": _dec_value(rng, 1, 1_000_000, 3),
                "prix-u": _dec_value(rng, 1, 999_999_999, 6),
                "dat_liv": None if rng.random() < 0.15 else order_day + timedelta(days=rng.randint(0, 20)),
                "dat_mod": _before(rng, ref),
            }
        )
    return rows


def _check_naive(name: str, value: datetime) -> datetime:
    if value.tzinfo is not None:
        raise ValueError(
            f"{name} must be a naive datetime (Progress DATETIME has no time zone), got {value!r}"
        )
    return value.replace(microsecond=0)


def generate_demo_rows(
    *, seed: int = 42, scale: float = 1.0, reference_ts: datetime = DEFAULT_REFERENCE_TS
) -> dict[str, list[Row]]:
    """The demo rows per table (in :data:`DEMO_TABLES` order, rows sorted by primary key), as neutral values.

    This is exactly what :func:`create_sqlite_source` / :func:`create_postgres_source` insert.
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    ref = _check_naive("reference_ts", reference_ts)
    counts = {t.name: t.row_count(scale) for t in DEMO_TABLES}
    out: dict[str, list[Row]] = {}

    rng = _table_rng(seed, "fournis")
    out["fournis"] = [_fournis_row(rng, f"F{i:05d}", ref) for i in range(1, counts["fournis"] + 1)]

    rng = _table_rng(seed, "client")
    out["client"] = [_client_row(rng, i, ref) for i in range(1, counts["client"] + 1)]
    # Guarantee both NULL and empty strings whatever the scale.
    out["client"][0]["e-mail"] = None
    out["client"][0]["code-postal"] = ""
    if len(out["client"]) > 1:
        out["client"][1]["e-mail"] = ""
        out["client"][1]["code-postal"] = None

    fournis_keys = [str(r["cod_fou"]) for r in out["fournis"]]
    rng = _table_rng(seed, "produit")
    out["produit"] = [_produit_row(rng, i, ref, fournis_keys) for i in range(1, counts["produit"] + 1)]

    produit_keys = [int(str(r["cod_pro"])) for r in out["produit"]]
    rng = _table_rng(seed, "hisprixa")
    seen: set[tuple[int, date]] = set()
    his: list[Row] = []
    while len(his) < counts["hisprixa"]:
        key = (rng.choice(produit_keys), ref.date() - timedelta(days=rng.randint(0, 1095)))
        if key in seen:
            continue
        seen.add(key)
        his.append(_hisprixa_row(rng, key[0], key[1], ref))
    out["hisprixa"] = his

    client_keys = [int(str(r["cod_cli"])) for r in out["client"]]
    rng = _table_rng(seed, "lignecli")
    lines: list[Row] = []
    num_cde = 100_000
    while len(lines) < counts["lignecli"]:
        num_cde += 1
        n = min(rng.randint(1, 6), counts["lignecli"] - len(lines))
        lines.extend(_lignecli_order(rng, num_cde, n, ref, client_keys, produit_keys))
    out["lignecli"] = lines

    result: dict[str, list[Row]] = {}
    for table in DEMO_TABLES:
        rows = out[table.name]
        rows.sort(key=functools.partial(_row_sort_key, table))
        result[table.name] = rows
    return result


def _sort_key(key: Key) -> tuple[Any, ...]:
    return tuple((v is None, v) for v in key)


def _row_sort_key(table: DemoTable, row: Row) -> tuple[Any, ...]:
    return _sort_key(tuple(row[c] for c in table.primary_key))


# --------------------------------------------------------------------------------------------- changes


@dataclass(frozen=True)
class TableChanges:
    """What :func:`apply_sqlite_changes` / :func:`apply_postgres_changes` did to one table.

    Keys are tuples of neutral values in :attr:`key_columns` order (``int``, ``str``, ``date``).  Every
    inserted and updated row has its modification column set to :attr:`modif_value` (``change_ts``, or its
    date for a date-only modification column); no other row was touched.
    """

    table: str
    key_columns: tuple[str, ...]
    modif_column: str
    modif_value: date | datetime
    updated_column: str
    inserted_keys: tuple[Key, ...]
    updated_keys: tuple[Key, ...]

    @property
    def inserted(self) -> int:
        return len(self.inserted_keys)

    @property
    def updated(self) -> int:
        return len(self.updated_keys)

    @property
    def changed_keys(self) -> tuple[Key, ...]:
        """Inserted then updated keys: what an incremental load from before ``change_ts`` must see."""
        return self.inserted_keys + self.updated_keys


@dataclass(frozen=True)
class ChangeSummary:
    """Per table (:data:`DEMO_TABLES` order) the inserted and updated keys of one "day of changes"."""

    change_ts: datetime
    tables: Mapping[str, TableChanges]

    def __getitem__(self, table: str) -> TableChanges:
        return self.tables[table]

    def inserted(self, table: str) -> int:
        return self.tables[table].inserted

    def updated(self, table: str) -> int:
        return self.tables[table].updated

    @property
    def total_inserted(self) -> int:
        return sum(t.inserted for t in self.tables.values())

    @property
    def total_updated(self) -> int:
        return sum(t.updated for t in self.tables.values())


@dataclass
class _Plan:
    inserts: dict[str, list[Row]]
    updates: dict[str, list[Row]]  # rows holding the key columns, the updated column and the modif column
    summary: ChangeSummary


def _bump(col: DemoColumn, old: Value, rng: random.Random) -> Decimal:
    """A new decimal value for ``col``, always different from ``old`` and within its precision."""
    assert col.kind == "decimal" and col.precision is not None and col.scale is not None
    quantum = Decimal(1).scaleb(-col.scale)
    step = Decimal(rng.randint(1, 999)) * quantum
    limit = Decimal(10) ** (col.precision - col.scale)
    base = old if isinstance(old, Decimal) else Decimal(rng.randint(1, 9999))
    new = base + step if base + step < limit else base - step
    return new.quantize(quantum)


def _plan_changes(existing: Mapping[str, list[Row]], *, seed: int, change_ts: datetime) -> _Plan:
    """Decide the inserts and updates from the rows present (key columns + updated column per table)."""
    keys: dict[str, list[Key]] = {}
    for table in DEMO_TABLES:
        keys[table.name] = sorted(
            (tuple(r[c] for c in table.primary_key) for r in existing[table.name]), key=_sort_key
        )
    pools_fournis = [str(k[0]) for k in keys["fournis"]]
    pools_client = [int(str(k[0])) for k in keys["client"]]
    pools_produit = [int(str(k[0])) for k in keys["produit"]]

    inserts: dict[str, list[Row]] = {}
    updates: dict[str, list[Row]] = {}
    changes: dict[str, TableChanges] = {}
    for name in _GENERATION_ORDER:
        table = demo_table(name)
        rng = _table_rng(seed, name, "changes")
        modif_value: date | datetime = change_ts.date() if table.date_modif_precision == "date" else change_ts
        present = keys[name]
        n_insert = max(2, round(len(present) * INSERT_FRACTION))
        n_update = min(len(present), max(1, round(len(present) * UPDATE_FRACTION)))

        # Updates first, among the rows present before this change.
        upd_col = table.column(_UPDATED_COLUMN[name])
        old_values = {tuple(r[c] for c in table.primary_key): r[upd_col.name] for r in existing[name]}
        upd_keys = sorted(rng.sample(present, n_update), key=_sort_key)
        upd_rows: list[Row] = []
        for key in upd_keys:
            row: Row = dict(zip(table.primary_key, key, strict=True))
            row[upd_col.name] = _bump(upd_col, old_values[key], rng)
            row[table.date_modif_col] = modif_value
            upd_rows.append(row)

        # Inserts: new keys.
        new_rows: list[Row]
        if name == "fournis":
            numbers = [int(k[1:]) for k in pools_fournis if k[:1] == "F" and k[1:].isdigit()]
            start = max(numbers, default=0) + 1
            new_rows = [_fournis_row(rng, f"F{i:05d}", change_ts) for i in range(start, start + n_insert)]
            pools_fournis += [str(r["cod_fou"]) for r in new_rows]
        elif name == "client":
            start = max(pools_client, default=0) + 1
            new_rows = [_client_row(rng, i, change_ts) for i in range(start, start + n_insert)]
            pools_client += [int(str(r["cod_cli"])) for r in new_rows]
        elif name == "produit":
            start = max(pools_produit, default=0) + 1
            new_rows = [
                _produit_row(rng, i, change_ts, pools_fournis) for i in range(start, start + n_insert)
            ]
            pools_produit += [int(str(r["cod_pro"])) for r in new_rows]
        elif name == "hisprixa":
            taken = set(present)
            new_rows = []
            day = change_ts.date()
            while len(new_rows) < n_insert:
                candidates = [p for p in pools_produit if (p, day) not in taken]
                for cod_pro in rng.sample(candidates, min(len(candidates), n_insert - len(new_rows))):
                    taken.add((cod_pro, day))
                    new_rows.append(_hisprixa_row(rng, cod_pro, day, change_ts))
                day -= timedelta(days=1)
        else:  # lignecli
            num_cde = max((int(str(k[0])) for k in present), default=100_000)
            new_rows = []
            while len(new_rows) < n_insert:
                num_cde += 1
                n = min(rng.randint(1, 4), n_insert - len(new_rows))
                new_rows += _lignecli_order(rng, num_cde, n, change_ts, pools_client, pools_produit)
        for row in new_rows:
            row[table.date_modif_col] = modif_value
        new_rows.sort(key=functools.partial(_row_sort_key, table))

        inserts[name] = new_rows
        updates[name] = upd_rows
        changes[name] = TableChanges(
            table=name,
            key_columns=table.primary_key,
            modif_column=table.date_modif_col,
            modif_value=modif_value,
            updated_column=upd_col.name,
            inserted_keys=tuple(tuple(r[c] for c in table.primary_key) for r in new_rows),
            updated_keys=tuple(upd_keys),
        )
    ordered = {t.name: changes[t.name] for t in DEMO_TABLES}
    return _Plan(inserts, updates, ChangeSummary(change_ts=change_ts, tables=ordered))


# ------------------------------------------------------------------------------------ backend execution


def to_sqlite_value(value: Value) -> Value:
    """Neutral value -> what is bound in SQLite (text dates/timestamps/decimals, 0/1 booleans)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return value


def sqlite_to_neutral(col: DemoColumn, value: object) -> Value:
    """What SQLite returns for ``col`` -> the neutral value (decimals quantized to the declared scale)."""
    if value is None:
        return None
    if col.kind == "decimal":
        assert col.scale is not None
        return Decimal(str(value)).quantize(Decimal(1).scaleb(-col.scale))
    if col.kind == "date":
        return date.fromisoformat(str(value))
    if col.kind == "timestamp":
        return datetime.fromisoformat(str(value))
    if col.kind == "boolean":
        return bool(value)
    if col.kind == "integer":
        return int(str(value))
    if col.kind == "double":
        return float(str(value))
    return str(value)


def _identity(col: DemoColumn, value: object) -> Value:
    return value  # type: ignore[return-value]  # psycopg already returns int/str/Decimal/date/...


def _identity_in(value: Value) -> Value:
    return value



class _Sql:
    """The only backend-specific part: placeholder, value adaptation, table qualification."""

    def __init__(
        self,
        conn: Any,
        *,
        placeholder: str,
        schema: str | None,
        to_db: Callable[[Value], Value],
        from_db: Callable[[DemoColumn, object], Value],
        type_of: Callable[[DemoColumn], str],
    ) -> None:
        self.conn = conn
        self.placeholder = placeholder
        self.schema = schema
        self.to_db = to_db
        self.from_db = from_db
        self.type_of = type_of
        # psycopg parses '%' in parameterized statements: identifiers like "remise%" need '%%' there.
        self.escape_percent = placeholder == "%s"

    def ref(self, table: str, *, params: bool = False) -> str:
        ref = _quote(table) if self.schema is None else f"{_quote(self.schema)}.{_quote(table)}"
        return self._esc(ref) if params else ref

    def _esc(self, text: str) -> str:
        return text.replace("%", "%%") if self.escape_percent else text

    def col(self, name: str) -> str:
        """A column identifier for a parameterized statement."""
        return self._esc(_quote(name))

    def recreate(self, table: DemoTable) -> None:
        cur = self.conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {self.ref(table.name)}")
        cols = [
            f"{_quote(c.name)} {self.type_of(c)}{'' if c.nullable else ' NOT NULL'}" for c in table.columns
        ]
        pk = ", ".join(_quote(c) for c in table.primary_key)
        cols.append(f"CONSTRAINT {_quote('pk_' + table.name)} PRIMARY KEY ({pk})")
        cur.execute(f"CREATE TABLE {self.ref(table.name)} (\n  " + ",\n  ".join(cols) + "\n)")
        index = _quote(f"ix_{table.name}_{table.date_modif_col}")
        cur.execute(f"CREATE INDEX {index} ON {self.ref(table.name)} ({_quote(table.date_modif_col)})")

    def insert(self, table: DemoTable, rows: Iterable[Row]) -> None:
        names = table.column_names
        sql = (
            f"INSERT INTO {self.ref(table.name, params=True)} ({', '.join(self.col(n) for n in names)}) "
            f"VALUES ({', '.join([self.placeholder] * len(names))})"
        )
        data = [tuple(self.to_db(row[n]) for n in names) for row in rows]
        if data:
            self.conn.cursor().executemany(sql, data)

    def update(self, table: DemoTable, rows: Sequence[Row]) -> None:
        if not rows:
            return
        set_cols = [c for c in rows[0] if c not in table.primary_key]
        sql = (
            f"UPDATE {self.ref(table.name, params=True)} SET "
            + ", ".join(f"{self.col(c)} = {self.placeholder}" for c in set_cols)
            + " WHERE "
            + " AND ".join(f"{self.col(c)} = {self.placeholder}" for c in table.primary_key)
        )
        data = [tuple(self.to_db(row[c]) for c in (*set_cols, *table.primary_key)) for row in rows]
        self.conn.cursor().executemany(sql, data)

    def fetch(self, table: DemoTable, columns: Sequence[str]) -> list[Row]:
        cols = [table.column(c) for c in columns]
        cur = self.conn.cursor()
        cur.execute(f"SELECT {', '.join(_quote(c) for c in columns)} FROM {self.ref(table.name)}")
        return [
            {c.name: self.from_db(c, v) for c, v in zip(cols, record, strict=True)}
            for record in cur.fetchall()
        ]


def _create(sql: _Sql, rows: Mapping[str, list[Row]]) -> dict[str, int]:
    for table in DEMO_TABLES:
        sql.recreate(table)
        sql.insert(table, rows[table.name])
    return {name: len(table_rows) for name, table_rows in rows.items()}


def _apply(sql: _Sql, *, seed: int, change_ts: datetime) -> ChangeSummary:
    change_ts = _check_naive("change_ts", change_ts)
    existing = {t.name: sql.fetch(t, (*t.primary_key, _UPDATED_COLUMN[t.name])) for t in DEMO_TABLES}
    plan = _plan_changes(existing, seed=seed, change_ts=change_ts)
    for table in DEMO_TABLES:
        sql.update(table, plan.updates[table.name])
        sql.insert(table, plan.inserts[table.name])
    return plan.summary


def _sqlite(conn: sqlite3.Connection) -> _Sql:
    return _Sql(
        conn,
        placeholder="?",
        schema=None,
        to_db=to_sqlite_value,
        from_db=sqlite_to_neutral,
        type_of=lambda c: c.sqlite_type,
    )


def _postgres(conn: psycopg.Connection[Any], schema: str) -> _Sql:
    return _Sql(
        conn,
        placeholder="%s",
        schema=schema,
        to_db=_identity_in,
        from_db=_identity,
        type_of=lambda c: c.postgres_type,
    )


# ------------------------------------------------------------------------------------------- public API


def create_sqlite_source(
    path: str | os.PathLike[str],
    *,
    seed: int = 42,
    scale: float = 1.0,
    reference_ts: datetime = DEFAULT_REFERENCE_TS,
) -> dict[str, int]:
    """(Re)create the SQLite file ``path`` with the five demo tables; return the rows per table."""
    rows = generate_demo_rows(seed=seed, scale=scale, reference_ts=reference_ts)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(target)) as conn, conn:
        counts = _create(_sqlite(conn), rows)
    return counts


def create_postgres_source(
    conninfo: str,
    *,
    schema: str = "PUB",
    seed: int = 42,
    scale: float = 1.0,
    reference_ts: datetime = DEFAULT_REFERENCE_TS,
) -> dict[str, int]:
    """Create ``schema`` if needed, drop and recreate its five demo tables (nothing else); rows per table."""
    rows = generate_demo_rows(seed=seed, scale=scale, reference_ts=reference_ts)
    with psycopg.connect(conninfo) as conn:  # one transaction, committed on success
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}")
        counts = _create(_postgres(conn, schema), rows)
    return counts


def apply_sqlite_changes(
    path: str | os.PathLike[str], *, seed: int = 7, change_ts: datetime
) -> ChangeSummary:
    """Apply one deterministic "day of changes" to the SQLite demo file (see :class:`ChangeSummary`)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no SQLite demo file at {path}")
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        summary = _apply(_sqlite(conn), seed=seed, change_ts=change_ts)
    return summary


def apply_postgres_changes(
    conninfo: str, *, schema: str = "PUB", seed: int = 7, change_ts: datetime
) -> ChangeSummary:
    """Apply one deterministic "day of changes" to the PostgreSQL demo schema (see :class:`ChangeSummary`)."""
    with psycopg.connect(conninfo) as conn:
        summary = _apply(_postgres(conn, schema), seed=seed, change_ts=change_ts)
    return summary
