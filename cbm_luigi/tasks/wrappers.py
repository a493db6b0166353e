"""Wrappers: one table (``LoadTable``) or every active table by priority tier (``LoadAll``)."""

from __future__ import annotations

import luigi

from cbm_luigi.metadata import PRIORITIES, MetadataStore
from cbm_luigi.tasks.common import MODES, BatchParameter, canonical_table, settings, table_spec, target
from cbm_luigi.tasks.table import MergeOds


class LoadTable(luigi.WrapperTask):
    """Load one table: ``--table produit --mode full``."""

    table = luigi.Parameter(description="source table name, in source or SQL-safe form")
    mode = luigi.ChoiceParameter(choices=MODES, default="incremental")
    batch = BatchParameter(default="")

    def requires(self) -> MergeOds:
        return MergeOds(table=canonical_table(settings().target, self.table), mode=self.mode, batch=self.batch)


class LoadAll(luigi.WrapperTask):
    """Every active table of config.ETL_Tables, critical tier first, then high, then normal."""

    mode = luigi.ChoiceParameter(choices=MODES, default="incremental")
    batch = BatchParameter(default="")
    continue_on_error = luigi.BoolParameter(default=False, description="keep going when a critical table fails")

    def tables(self) -> list[str]:
        url = settings().target
        names = MetadataStore(target()).table_names(active_only=True)
        return sorted(names, key=lambda n: (PRIORITIES.index(table_spec(url, n).priority), n))

    def requires(self) -> list[MergeOds]:
        return [MergeOds(table=n, mode=self.mode, batch=self.batch) for n in self.tables()]
