"""Partitioned extraction: a full load of a large table read as N ranges of its first key column, each over a
source connection of its own, written as parts of one extract and combined once (docs/OPERATIONS.md,
"Partitioned extraction").

The Luigi graph (tasks/table.py): ``PartitionBounds`` (one source connection: the source clock, then MIN and MAX
of the key) -> N ``ExtractPart`` (one source connection each, within ``[resources] source_connections``) ->
``ExtractParquet`` (no source connection: the parts' files linked into one extract, one manifest).  Everything lives
under ``<cache>/<table>/.tmp-<batch>__<mode>.parts/`` until the combined extract is renamed into place:

* ``bounds-of-N.json``: the plan, written once and atomically: every part reads the same window with the same
  ranges, whatever host or process runs it and whenever;
* ``part-I-of-N/``: one part, an extract of its own (``_manifest.json`` and ``part-NNNNN.parquet``), written
  atomically by :func:`cbm_luigi.pipeline.extract.extract_to_parquet`: a part killed mid-read leaves no
  ``part-I-of-N/``, and the next run reads that part only.

The ranges cover every key by construction: the first part reads ``key < b1`` (and the rows whose key is NULL,
refused later by the key check as in any extract), part I ``b_I <= key < b_I+1``, the last ``key >= b_N-1``; rows
inserted after the plan beyond its MIN or MAX fall into the first or the last part.  The extract's source clock is
the plan's, read before MIN and MAX and before any part's SELECT: what changes during the read is caught by the
next incremental run, as with one SELECT.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from cbm_luigi.errors import DataError
from cbm_luigi.model.specs import TableSpec
from cbm_luigi.pipeline import transform
from cbm_luigi.pipeline.extract import MANIFEST, Manifest, extract_problem, remove_leftovers
from cbm_luigi.pipeline.sources import Source
from cbm_luigi.pipeline.sources.flavors import Window

log = logging.getLogger(__name__)


def parts_dir(extract_dir: Path) -> Path:
    """Where the parts of the extract ``extract_dir`` are written until they are combined."""
    return extract_dir.parent / f".tmp-{extract_dir.name}.parts"


def part_dir(extract_dir: Path, part: int, parts: int) -> Path:
    """The folder of part ``part`` (0-based) of ``parts``: ``part-1-of-4`` for the first of four."""
    return parts_dir(extract_dir) / f"part-{part + 1}-of-{parts}"


def bounds_path(extract_dir: Path, parts: int) -> Path:
    return parts_dir(extract_dir) / f"bounds-of-{parts}.json"


@dataclass(frozen=True)
class PartitionPlan:
    """The ranges of a partitioned extract and the window they share (``bounds-of-N.json``)."""

    table: str
    parts: int
    key_column: str  # the source's name of the first key column
    key_min: int | None  # MIN and MAX when the plan was made (None: no row)
    key_max: int | None
    bounds: list[int]  # the N-1 inner boundaries, non-decreasing
    source_clock: str  # ISO: the source's clock before MIN/MAX and before every part: the extract's watermark
    started: str  # ISO, local time: the start of the table's flow
    window_since: str | None
    window_precision: str
    window_reason: str

    def window(self) -> Window:
        since = datetime.fromisoformat(self.window_since) if self.window_since else None
        return Window(since, self.window_precision, self.window_reason)

    def part_window(self, part: int) -> Window:
        """The window of part ``part`` (0-based): the shared window restricted to its key range."""
        low = self.bounds[part - 1] if part > 0 else None
        high = self.bounds[part] if part < self.parts - 1 else None
        where = (f"{self.key_column} >= {low}" if low is not None else "") + \
                (" and " if low is not None and high is not None else "") + \
                (f"{self.key_column} < {high}" if high is not None else "")
        return replace(self.window(), reason=f"{self.window_reason}, part {part + 1} of {self.parts}"
                       + (f" ({where})" if where else ""),
                       key_column=self.key_column, key_low=low, key_high=high, key_nulls=part == 0)

    @classmethod
    def read(cls, path: Path) -> PartitionPlan:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def split_range(low: int | None, high: int | None, parts: int) -> list[int]:
    """N-1 boundaries splitting ``low..high`` (inclusive) into N ranges of (almost) equal width.  Equal widths of
    the key, not equal row counts: a key with gaps or a skewed distribution gives parts of unequal sizes."""
    if low is None or high is None:  # no row: every part but the first reads an empty range
        return [0] * (parts - 1)
    span = high - low + 1
    return [low + span * i // parts for i in range(1, parts)]


def _as_int(value: Any, table: str, column: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, Decimal)) or str(value).strip().lstrip("-").isdigit():
        return int(value)
    raise DataError(f"table {table}: MIN/MAX of the key column {column} gave {value!r}, not an integer: "
                    "partitioned extraction needs an integer first key column (config.ETL_Tables.ExtractPartitions"
                    " = 1 reads it over one connection)")


def plan_partitions(spec: TableSpec, source: Source, window: Window, parts: int, *, started: datetime
                    ) -> PartitionPlan:
    """Read the source's clock, then MIN and MAX of the first key column over the window; split into ``parts``."""
    clock = source.clock()  # first: rows changed while the parts read are caught by the next run
    key = spec.column(spec.primary_key[0]).column_name
    min_sql, max_sql, params = source.flavor.key_bounds_sql(spec, source.schema, window, key)
    low = _as_int(source.scalar(min_sql, params), spec.table_name, key)
    high = _as_int(source.scalar(max_sql, params), spec.table_name, key)
    plan = PartitionPlan(
        table=spec.table_name, parts=parts, key_column=key, key_min=low, key_max=high,
        bounds=split_range(low, high, parts), source_clock=clock.isoformat(),
        started=started.isoformat(timespec="microseconds"),
        window_since=window.since.isoformat() if window.since else None, window_precision=window.precision,
        window_reason=window.reason,
    )
    log.info("%s: %d key ranges of %s (%s..%s): bounds %s", spec.table_name, parts, key, low, high, plan.bounds)
    return plan


def write_plan(plan: PartitionPlan, path: Path) -> None:
    """Write the plan atomically (a reader sees the whole file or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(asdict(plan), indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (instant, the part keeps its file until the combined extract is in place); a copy where the
    file system has none (some network shares)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def combine_parts(spec: TableSpec, plan: PartitionPlan, extract_dir: Path, *, batch: str, mode: str,
                  run_id: str) -> Manifest:
    """The parts as one extract in ``extract_dir`` (renamed into place when complete), with one manifest; the
    parts' folder is removed afterwards.  A part that is unusable (a file changed since it was written) is removed
    and the table fails saying so: the next run reads that part again, and only it."""
    t0 = time.perf_counter()
    dirs = [part_dir(extract_dir, i, plan.parts) for i in range(plan.parts)]
    manifests: list[Manifest] = []
    for d in dirs:
        problem = extract_problem(d) if (d / MANIFEST).exists() else f"{d.name} is missing"
        if problem is not None:
            shutil.rmtree(d, ignore_errors=True)
            raise DataError(f"table {spec.table_name}: partition {d.name} of the extract {extract_dir} is unusable "
                            f"({problem}): it was removed; run again (only that partition is read again)")
        manifests.append(Manifest.read(d))
    if any(m.columns != manifests[0].columns for m in manifests):
        shutil.rmtree(parts_dir(extract_dir), ignore_errors=True)
        raise DataError(f"table {spec.table_name}: the partitions of the extract {extract_dir} hold different "
                        "columns (cbm-etl sync-columns ran during the load?): they were removed; run again")
    remove_leftovers(extract_dir)
    tmp = extract_dir.parent / f".tmp-{extract_dir.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files: list[str] = []
        sizes: dict[str, int] = {}
        cleaning = transform.CleaningStats()
        for d, m in zip(dirs, manifests, strict=True):
            for f in m.files:
                name = f"part-{len(files):05d}.parquet"
                _link_or_copy(d / f, tmp / name)
                files.append(name)
                sizes[name] = (tmp / name).stat().st_size
            c = m.cleaning
            cleaning.merge(transform.CleaningStats(
                dict(c.get("nulled_out_of_range") or {}), dict(c.get("removed_nul_chars") or {}),
                dict(c.get("truncated_too_wide") or {}), dict(c.get("first_out_of_range") or {})))
        first = manifests[0]
        manifest = Manifest(
            table=spec.table_name, batch=batch, mode=mode, source_clock=plan.source_clock,
            window=f"{plan.window_reason}, {plan.parts} key ranges of {plan.key_column}",
            window_since=plan.window_since, rows=sum(m.rows for m in manifests), files=files, columns=first.columns,
            hash_columns=first.hash_columns, run_id=run_id,
            # the parts run side by side: the longest one, then this combination
            extract_seconds=round(max(m.extract_seconds for m in manifests) + time.perf_counter() - t0, 3),
            transform_seconds=round(max(m.transform_seconds for m in manifests), 3), cleaning=cleaning.as_dict(),
            created=datetime.now().isoformat(timespec="seconds"),
            transform_work_seconds=round(sum(m.transform_work_seconds for m in manifests), 3),
            started=plan.started, sizes=sizes,
        )
        (tmp / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2), encoding="utf-8")
        if extract_dir.exists():  # a leftover without manifest cannot be complete: replace it
            shutil.rmtree(extract_dir)
        os.replace(tmp, extract_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(parts_dir(extract_dir), ignore_errors=True)
    log.info("%s: %d partitions combined into %s: %d rows, %d files", spec.table_name, plan.parts, extract_dir,
             manifest.rows, len(files))
    return manifest
