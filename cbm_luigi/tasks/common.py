"""Shared pieces of the tasks: parameters, cached settings/target/specs, Luigi targets on the ODS database."""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import luigi

from cbm_luigi.config import Settings, default_batch, load_settings, validate_batch
from cbm_luigi.destinations import open_target
from cbm_luigi.destinations.base import Target
from cbm_luigi.errors import ConfigError
from cbm_luigi.metadata import MetadataStore, TableSpec
from cbm_luigi.runlog import marker_exists

log = logging.getLogger(__name__)
MODES = ("full", "incremental")
PRIORITY_VALUES = {"critical": 300, "high": 200, "normal": 100}


@functools.lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings()


def target() -> Target:
    return open_target(settings().target)


@functools.lru_cache(maxsize=256)
def table_spec(url: str, table: str) -> TableSpec:
    """The table's spec, read once per process (the watermark is read separately, fresh)."""
    return MetadataStore(open_target(url)).table_spec(table)


@functools.lru_cache(maxsize=256)
def canonical_table(url: str, table: str) -> str:
    return MetadataStore(open_target(url)).resolve_table(table)


_HAS_METADATA: set[str] = set()


def has_metadata(url: str) -> bool:
    """Whether the target has its config tables; a yes is remembered for the process (one query less per
    completeness check: each opens the database, and a DuckDB file is opened by one process at a time)."""
    if url in _HAS_METADATA:
        return True
    if open_target(url).has_metadata():
        _HAS_METADATA.add(url)
        return True
    return False


def clear_caches() -> None:
    """Forget settings, specs and engines (after metadata changes, or in a forked worker)."""
    settings.cache_clear()
    table_spec.cache_clear()
    canonical_table.cache_clear()
    open_target.cache_clear()
    _HAS_METADATA.clear()
    from cbm_luigi.orchestration import current_plan

    current_plan.cache_clear()


def writer_resources() -> dict[str, int]:
    """Luigi resources of a task that writes to the target: ``target_writer`` when the target allows one writer
    at a time (DuckDB), so the scheduler runs such tasks one by one (luigi.cfg ``[resources] target_writer=1``)."""
    from cbm_luigi.destinations import dialect_for_url

    try:
        return {"target_writer": 1} if dialect_for_url(settings().target).single_writer else {}
    except Exception:  # noqa: BLE001 - a bad setting is reported by the task itself, with its message
        return {}


# A forked Luigi worker must not reuse the parent's pooled connections.
os.register_at_fork(after_in_child=clear_caches)


class BatchParameter(luigi.Parameter):
    """The run key: letters, digits, ``-_.:``; empty means today (or this hour) per ``batch_granularity``."""

    def normalize(self, x: Any) -> str:
        if x is None or str(x).strip() == "":
            return default_batch(settings().batch_granularity)
        try:
            return validate_batch(str(x).strip())
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc


class MarkerTarget(luigi.Target):
    """Exists when the MergeOds marker row for (table, batch) is in etl.ETL_Markers."""

    def __init__(self, url: str, table: str, batch: str) -> None:
        self.url, self.table, self.batch = url, table, batch

    def exists(self) -> bool:
        t = open_target(self.url)
        if not has_metadata(self.url):
            return False
        return marker_exists(t, canonical_table(self.url, self.table), self.batch)


class StagingTarget(luigi.Target):
    """Exists when stg.<table> holds this batch (etl.ETL_StagingState, written with the data)."""

    def __init__(self, url: str, table: str, batch: str) -> None:
        self.url, self.table, self.batch = url, table, batch

    def exists(self) -> bool:
        from cbm_luigi.load import staging_state

        t = open_target(self.url)
        if not has_metadata(self.url):
            return False
        state = staging_state(t, canonical_table(self.url, self.table))
        return state is not None and state.batch == self.batch
