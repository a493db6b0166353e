"""Shared pieces of the tasks: parameters, cached settings/target/specs, Luigi targets on the ODS database."""

from __future__ import annotations

import functools
import logging
import os

from cbm_luigi.config.settings import Settings, load_settings
from cbm_luigi.destinations import dialect_for_url, open_target
from cbm_luigi.destinations.client import Target
from cbm_luigi.model.plan import Plan
from cbm_luigi.model.specs import TableSpec
from cbm_luigi.store.config_tables import MetadataStore, load_plan
from cbm_luigi.store.schema import has_metadata

log = logging.getLogger(__name__)


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
    """The registered name of ``table``; the first call of a process also learns that the target has its config
    tables (:func:`metadata_ready`), in the same transaction (one opening of a DuckDB file less)."""
    t = open_target(url)
    with t.reading():
        if metadata_ready(url):
            return MetadataStore(t).resolve_table(table)
    return MetadataStore(t).resolve_table(table)  # no config tables: the MetadataError saying to run init-db


_HAS_METADATA: set[str] = set()


def metadata_ready(url: str) -> bool:
    """Whether the target has its config tables; a yes is remembered for the process (one query less per
    completeness check: each opens the database, and a DuckDB file is opened by one process at a time)."""
    if url in _HAS_METADATA:
        return True
    if has_metadata(open_target(url)):
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
    current_plan.cache_clear()


def writer_resources() -> dict[str, int]:
    """Luigi resources of a task that writes to the target: ``target_writer`` when the target allows one writer
    at a time (DuckDB), so the scheduler runs such tasks one by one (luigi.cfg ``[resources] target_writer=1``)."""

    try:
        return {"target_writer": 1} if dialect_for_url(settings().target).single_writer else {}
    except Exception:  # noqa: BLE001 - a bad setting is reported by the task itself, with its message
        return {}


# A forked Luigi worker must not reuse the parent's pooled connections.
os.register_at_fork(after_in_child=clear_caches)


@functools.lru_cache(maxsize=8)
def current_plan(url: str) -> Plan:
    """The plan of the target at ``url``, read once per process (``tasks.common.clear_caches`` forgets it)."""

    return load_plan(open_target(url))
