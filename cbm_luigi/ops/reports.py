"""Report files for validation, profiling and data-quality runs: HTML for people, CSV and JSON for machines.

Writes ``<reports dir>/<kind>/<stem>.html``, ``.csv`` and ``.json`` (kind: ``validation``, ``profiling``,
``dq``).  The reports dir is ``reports`` relative to the working directory unless set by ``CBM_REPORTS_DIR``
(or ``reports_dir`` in luigi.cfg ``[cbm_quality]``).  The HTML is one self-contained file: inline CSS, small inline SVG
bars, red / amber / green status badges, no script and no external asset, so it opens from a mail attachment
or a file share.  Every value is HTML-escaped.  Files are written to a temporary name and renamed, so a
half-written report is never left behind.

Used by :mod:`cbm_luigi.ops.validation`, :mod:`cbm_luigi.ops.profiling` and :mod:`cbm_luigi.ops.quality`; nothing to run.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from cbm_luigi.config.options import reports_dir

log = logging.getLogger(__name__)

#: status word -> colour class (red / amber / green / grey)
STATUS_CLASS = {
    "match": "ok", "ok": "ok", "pass": "ok", "passed": "ok", "success": "ok",
    "behind": "warn", "warning": "warn", "warn": "warn", "suggested": "warn", "near_width": "warn",
    "mismatch": "bad", "error": "bad", "failed": "bad", "fail": "bad", "critical": "bad", "overflow": "bad",
}




def stamp(ts: datetime | None = None) -> str:
    """A file-name timestamp: ``20261125T214501``."""
    return (ts or datetime.now()).strftime("%Y%m%dT%H%M%S")


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    csv: Path
    json: Path

    def describe(self) -> str:
        return f"{self.html} (+ .csv, .json)"


def json_default(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, Path):
        return str(v)
    return str(v)


def to_json(data: Any, indent: int | None = 2) -> str:
    return json.dumps(data, indent=indent, default=json_default, ensure_ascii=False)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV with a header; columns default to the union of the rows' keys, in first-seen order."""
    if columns is None:
        seen: dict[str, None] = {}
        for r in rows:
            for k in r:
                seen.setdefault(k, None)
        columns = list(seen)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(r.get(k)) for k in columns})
    return buf.getvalue()


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, list | dict | tuple):
        return to_json(v, indent=None)
    if isinstance(v, datetime | date):
        return v.isoformat()
    return v


def write_report(kind: str, stem: str, html_text: str, csv_rows: Sequence[Mapping[str, Any]],
                 data: Any, csv_columns: Sequence[str] | None = None, base: Path | None = None) -> ReportFiles:
    """Write the three files of one report and return their paths."""
    folder = (base or reports_dir()) / kind
    folder.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(folder / f"{stem}.html", folder / f"{stem}.csv", folder / f"{stem}.json")
    _atomic_write(files.html, html_text)
    _atomic_write(files.csv, csv_text(csv_rows, csv_columns))
    _atomic_write(files.json, to_json(data))
    log.info("report written: %s", files.describe())
    return files


# -- HTML building blocks --------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 -apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:24px;color:#1f2328}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px} .sub{color:#59636e;margin-bottom:16px}
table{border-collapse:collapse;margin:8px 0 16px;min-width:40%} th,td{border:1px solid #d1d9e0;padding:4px 8px;
text-align:left;vertical-align:top} th{background:#f6f8fa;position:sticky;top:0} td.n{text-align:right;
font-variant-numeric:tabular-nums} tr.bad td{background:#ffebe9} tr.warn td{background:#fff8c5}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px;color:#fff}
.badge.ok{background:#1a7f37}.badge.warn{background:#9a6700}.badge.bad{background:#cf222e}.badge.na{background:#6e7781}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}.card{border:1px solid #d1d9e0;border-radius:6px;
padding:8px 14px;min-width:110px}.card .v{font-size:22px;font-weight:600}.card.bad{border-color:#cf222e}
.card.warn{border-color:#9a6700}.card.ok{border-color:#1a7f37} code,.mono{font-family:ui-monospace,Consolas,monospace;
font-size:12px} .note{color:#59636e;font-size:12px} details{margin:4px 0}
"""

_BAR_COLOURS = {"ok": "#1a7f37", "warn": "#bf8700", "bad": "#cf222e", "na": "#8c959f", "info": "#0969da"}


class Raw(str):
    """Text already rendered as HTML (not escaped again)."""


def esc(v: Any) -> str:
    if isinstance(v, Raw):
        return str(v)
    if v is None:
        return ""
    if isinstance(v, float):
        return html.escape(f"{v:,.2f}")
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return html.escape(str(v))


def status_class(status: str | None) -> str:
    return STATUS_CLASS.get((status or "").lower(), "na")


def badge(status: str | None, text: str | None = None) -> Raw:
    return Raw(f'<span class="badge {status_class(status)}">{esc(text or status or "n/a")}</span>')


def bar(value: float | None, maximum: float | None, css: str = "info", width: int = 120, label: str = "") -> Raw:
    """A small horizontal SVG bar: ``value`` out of ``maximum``, with an optional text label after it."""
    if value is None or not maximum or maximum <= 0:
        return Raw(esc(label))
    frac = max(0.0, min(1.0, float(value) / float(maximum)))
    w = round(frac * width, 1)
    colour = _BAR_COLOURS.get(css, css)
    svg = (f'<svg width="{width}" height="10" role="img" aria-label="{esc(label)}">'
           f'<rect width="{width}" height="10" fill="#eaeef2"/><rect width="{w}" height="10" fill="{colour}"/></svg>')
    return Raw(f'{svg} <span class="mono">{esc(label)}</span>' if label else svg)


def cards(items: Iterable[tuple[str, Any, str | None]]) -> Raw:
    """Figures at the top of a report: (label, value, status class or None)."""
    out = ['<div class="cards">']
    for label, value, css in items:
        out.append(f'<div class="card {css or ""}"><div class="v">{esc(value)}</div>'
                   f'<div class="note">{esc(label)}</div></div>')
    out.append("</div>")
    return Raw("".join(out))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], row_classes: Sequence[str | None] | None = None,
          numeric: Sequence[int] = ()) -> Raw:
    """An HTML table; ``row_classes`` colours whole rows (bad / warn), ``numeric`` right-aligns columns."""
    nums = set(numeric)
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        css = row_classes[i] if row_classes and i < len(row_classes) else None
        out.append(f'<tr class="{css}">' if css else "<tr>")
        for j, cell in enumerate(row):
            out.append(f'<td class="n">{esc(cell)}</td>' if j in nums else f"<td>{esc(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return Raw("".join(out))


def heading(text: str) -> Raw:
    return Raw(f"<h2>{esc(text)}</h2>")


def paragraph(text: str, css: str = "") -> Raw:
    return Raw(f'<p class="{css}">{esc(text)}</p>' if css else f"<p>{esc(text)}</p>")


def collapsible(summary: str, body: Raw | str) -> Raw:
    return Raw(f"<details><summary>{esc(summary)}</summary>{esc(body)}</details>")


def page(title: str, subtitle: str, blocks: Iterable[Raw | str]) -> str:
    body = "\n".join(esc(b) if not isinstance(b, Raw) else str(b) for b in blocks)
    generated = datetime.now().isoformat(sep=" ", timespec="seconds")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{esc(title)}</h1><div class=\"sub\">{esc(subtitle)} &middot; generated {esc(generated)}</div>\n"
        f"{body}\n</body></html>\n"
    )


def pct(part: int | float | None, whole: int | float | None) -> float | None:
    """Percentage rounded to 2 decimals; None when the whole is 0 or unknown."""
    if part is None or not whole:
        return None
    return round(100.0 * float(part) / float(whole), 2)
