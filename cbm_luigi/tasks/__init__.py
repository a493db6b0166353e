"""The Luigi graph: ``ExtractParquet -> LoadStaging -> MergeOds`` per table, under ``LoadTable`` / ``LoadAll``.

Run with the ``luigi`` command::

    luigi --module cbm_luigi.tasks LoadTable --table produit --mode full --local-scheduler
    luigi --module cbm_luigi.tasks LoadAll --mode incremental --LoadAll-batch 2026-11-25T14 --local-scheduler

Parameters stay small (table, mode, batch).  Completeness comes from targets only: the extract's manifest file,
the staging-state row, and the merge marker row (written in the merge's transaction), so re-running a finished
batch runs nothing and re-running after a crash finishes exactly what is missing.
"""

from __future__ import annotations

from cbm_luigi.tasks.table import ExtractParquet, LoadStaging, MergeOds
from cbm_luigi.tasks.wrappers import LoadAll, LoadTable

__all__ = ["ExtractParquet", "LoadAll", "LoadStaging", "LoadTable", "MergeOds"]
