"""Wrappers: one table (``LoadTable``), every active table by priority tier (``LoadAll``), and the critical gate.

``LoadAll`` reads the plan (``cbm_luigi/orchestration.py``: tiers from config.ETL_Tables, dependencies from
config.ETL_Dependencies, refused when a dependency is unknown, inactive or in a cycle) and fans out one
``MergeOds`` per table.  Unless ``--continue-on-error``, every table outside the critical tier (and outside what
the critical tables depend on) starts with ``ExtractParquet(after_critical=True)``, which requires the
``CriticalGate``: a failed critical table leaves the gate pending, so no other table starts.  With
``--continue-on-error`` there is no gate, and a failure only holds back the tables that depend on it.

    luigi --module cbm_luigi.tasks LoadAll --mode incremental --workers 4
    luigi --module cbm_luigi.tasks LoadAll --mode incremental --continue-on-error
"""

from __future__ import annotations

import luigi

from cbm_luigi.ops.night_report import write_after_run
from cbm_luigi.tasks.context import canonical_table, current_plan, settings
from cbm_luigi.tasks.labels import table_family
from cbm_luigi.tasks.params import MODES, BatchParameter
from cbm_luigi.tasks.table import CriticalGate, MergeOds


class LoadTable(luigi.WrapperTask):
    """Load one table (and, first, the tables it depends on): ``--table produit --mode full``."""

    table = luigi.Parameter(description="source table name, in source or SQL-safe form")
    mode = luigi.ChoiceParameter(choices=MODES, default="incremental")
    batch_id = BatchParameter(default="", description="run key; default: today (or this hour)")

    @property
    def task_family(self) -> str:
        """``produit.LoadTable`` in the scheduler's web view (the table as typed; see tasks/labels.py)."""
        return table_family(type(self), self.table)

    def requires(self) -> MergeOds:
        return MergeOds(table=canonical_table(settings().target, self.table), mode=self.mode,
                        batch_id=self.batch_id)


class LoadAll(luigi.WrapperTask):
    """Every active table of config.ETL_Tables: critical tier first, then high, then normal."""

    mode = luigi.ChoiceParameter(choices=MODES, default="incremental")
    batch_id = BatchParameter(default="", description="run key; default: today (or this hour)")
    continue_on_error = luigi.BoolParameter(
        default=False, description="when a critical table fails, load the other tables anyway")

    def tables(self) -> list[str]:
        """Active tables in tier order; raises MetadataError on a bad dependency or a cycle (naming it)."""
        plan = current_plan(settings().target)
        plan.check()
        return list(plan.tables)

    def requires(self) -> list[luigi.Task]:
        plan = current_plan(settings().target)
        tables = self.tables()
        merges: list[luigi.Task] = [
            MergeOds(table=t, mode=self.mode, batch_id=self.batch_id,
                     after_critical=plan.gated(t, self.continue_on_error))
            for t in tables
        ]
        if any(plan.gated(t, self.continue_on_error) for t in tables):
            return [CriticalGate(mode=self.mode, batch_id=self.batch_id), *merges]
        return merges


@LoadAll.event_handler(luigi.Event.SUCCESS)
def _write_night_report(task: LoadAll) -> None:
    """Every table of the batch is loaded: write the night report (``cbm-etl report``); never fails the run."""
    write_after_run(from_handler=True)
