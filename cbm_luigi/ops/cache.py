"""Parquet cache cleanup: remove extracts older than N days, never one an unfinished batch still needs.

The cache holds ``<cache>/<table>/<batch>__<mode>/`` (parquet files + ``_manifest.json``) and, while an extraction
runs or after one crashed, ``<cache>/<table>/.tmp-<name>-<id>/``.  Rules (docs/ALERTS.md):

* an extract whose batch is finished (its MergeOds marker is in ``etl.ETL_Markers``) is removed once older than
  ``--days`` (``--days 0``: all of them);
* an extract of an UNFINISHED batch (no marker) is kept: a re-run resumes from it.  It is only removed when it is
  also older than ``--keep-unfinished-days`` (default 14: the batch is considered abandoned; re-running it would
  extract again from the source, which is safe because the watermark only moves on a successful merge), and
  never while ``stg.<table>`` holds that batch (``etl.ETL_StagingState``: the merge would need its manifest);
* a directory without a manifest (a crash between writing and renaming) is garbage once older than ``--days``;
* ``.tmp-*`` directories are removed when nothing was written in them for ``--tmp-grace-hours`` (default 6) and
  they are older than ``--days``: an extraction running right now writes into its own and is left alone.

The age of an extract is the newest modification time of its files.  When the target cannot be read, nothing is
removed (finished and unfinished extracts cannot be told apart).  Run: ``cbm-etl cleanup-cache --days 7``.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from cbm_luigi.destinations.client import Target
from cbm_luigi.errors import TargetError
from cbm_luigi.pipeline.extract import MANIFEST, Manifest
from cbm_luigi.store.markers import finished_batches, marker_id
from cbm_luigi.store.staging_state import staged_batches

log = logging.getLogger(__name__)
DAY = 86_400.0


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    table: str  # as recorded in the manifest (or the directory name)
    batch: str | None
    mode: str | None
    files: int
    bytes: int
    age_seconds: float
    kind: str  # extract | incomplete | tmp
    action: str  # remove | keep
    reason: str


@dataclass
class CleanupReport:
    entries: list[CacheEntry] = field(default_factory=list)
    dry_run: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def removed(self) -> list[CacheEntry]:
        return [e for e in self.entries if e.action == "remove"]

    @property
    def kept(self) -> list[CacheEntry]:
        return [e for e in self.entries if e.action == "keep"]

    @property
    def files_freed(self) -> int:
        return sum(e.files for e in self.removed)

    @property
    def bytes_freed(self) -> int:
        return sum(e.bytes for e in self.removed)


def _walk(path: Path) -> tuple[int, int, float]:
    """(files, bytes, newest mtime) of a directory tree."""
    files = size = 0
    newest = path.stat().st_mtime
    for p in path.rglob("*"):
        try:
            st = p.stat()
        except OSError:
            continue
        newest = max(newest, st.st_mtime)
        if p.is_file():
            files += 1
            size += st.st_size
    return files, size, newest




def plan_cleanup(cache_dir: Path, target: Target, days: float, *, keep_unfinished_days: float = 14.0,
                 tmp_grace_hours: float = 6.0, now: float | None = None) -> CleanupReport:
    """Decide, for every directory of the cache, whether it is removed and why.  Removes nothing."""
    if days < 0:
        raise ValueError("--days must be 0 or more")
    now = now if now is not None else time.time()
    report = CleanupReport()
    if not cache_dir.exists():
        return report
    try:
        finished = finished_batches(target)
        staged = staged_batches(target)
    except Exception as exc:
        raise TargetError(
            f"cannot read etl.ETL_Markers / etl.ETL_StagingState ({type(exc).__name__}: {exc}); nothing was "
            "removed: without them, extracts still needed by an unfinished batch cannot be recognised. "
            "Check CBM_TARGET (cbm-etl preflight)"
        ) from exc
    max_age = days * DAY
    for table_dir in sorted(p for p in cache_dir.iterdir() if p.is_dir()):
        for d in sorted(p for p in table_dir.iterdir() if p.is_dir()):
            report.entries.append(_decide(d, table_dir.name, now, max_age, keep_unfinished_days * DAY,
                                          tmp_grace_hours * 3600, finished, staged))
    return report


def _decide(d: Path, table_dir: str, now: float, max_age: float, keep_unfinished: float, tmp_grace: float,
            finished: set[str], staged: set[tuple[str, str]]) -> CacheEntry:
    files, size, newest = _walk(d)
    age = max(0.0, now - newest)
    old = age > max_age or max_age == 0
    days_txt = f"{age / DAY:.1f} d old"

    def entry(kind: str, remove: bool, reason: str, table: str = table_dir, batch: str | None = None,
              mode: str | None = None) -> CacheEntry:
        return CacheEntry(d, table, batch, mode, files, size, age, kind, "remove" if remove else "keep", reason)

    if d.name.startswith(".tmp-"):
        if age < tmp_grace:
            return entry("tmp", False, f"temporary dir written {age / 3600:.1f} h ago: an extraction may be running")
        return entry("tmp", old, f"stale temporary dir, {days_txt}" if old else f"temporary dir, {days_txt}")
    manifest_path = d / MANIFEST
    if not manifest_path.is_file():
        return entry("incomplete", old, f"no manifest (incomplete extract), {days_txt}")
    try:
        m = Manifest.read(d)
    except Exception as exc:  # noqa: BLE001 - any unreadable manifest is treated as garbage
        return entry("incomplete", old, f"unreadable manifest ({type(exc).__name__}), {days_txt}")
    if marker_id(m.table, m.batch) in finished:
        return entry("extract", old, f"batch finished, {days_txt}", m.table, m.batch, m.mode)
    if (m.table, m.batch) in staged:
        return entry("extract", False, "batch unfinished and held by staging: its merge needs this extract",
                     m.table, m.batch, m.mode)
    if age > keep_unfinished and old:
        return entry("extract", True, f"batch unfinished but abandoned ({days_txt} > --keep-unfinished-days)",
                     m.table, m.batch, m.mode)
    return entry("extract", False, f"batch unfinished: a re-run resumes from it ({days_txt})", m.table, m.batch,
                 m.mode)


def cleanup_cache(cache_dir: Path, target: Target, days: float, *, dry_run: bool = False,
                  keep_unfinished_days: float = 14.0, tmp_grace_hours: float = 6.0,
                  now: float | None = None) -> CleanupReport:
    """Plan, then remove what the plan says (unless ``dry_run``); empty table directories are removed too."""
    report = plan_cleanup(cache_dir, target, days, keep_unfinished_days=keep_unfinished_days,
                          tmp_grace_hours=tmp_grace_hours, now=now)
    report.dry_run = dry_run
    if dry_run:
        return report
    for i, e in enumerate(report.entries):
        if e.action != "remove":
            continue
        try:
            shutil.rmtree(e.path)
            log.info("cache: removed %s (%d files, %d bytes): %s", e.path, e.files, e.bytes, e.reason)
        except OSError as exc:
            report.errors.append(f"{e.path}: {exc}")
            report.entries[i] = replace(e, action="keep", reason=f"could not remove: {exc}")
            log.error("cache: could not remove %s: %s", e.path, exc)
    for table_dir in (p for p in cache_dir.iterdir() if p.is_dir()) if cache_dir.exists() else ():
        try:
            if not any(table_dir.iterdir()):
                table_dir.rmdir()
        except OSError:
            pass
    return report
