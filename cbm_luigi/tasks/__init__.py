"""The Luigi graph: ``ExtractParquet -> LoadStaging -> MergeOds`` per table, under ``LoadTable`` / ``LoadAll``.

Run with the ``luigi`` command::

    luigi --module cbm_luigi.tasks LoadTable --table produit --mode full --local-scheduler
    luigi --module cbm_luigi.tasks LoadAll --mode incremental --batch-id 2026-11-25T14 --local-scheduler

Parameters stay small (table, mode, batch_id), and every one works bare on the ``luigi`` command line
(``--table``, ``--mode``, ``--batch-id``, ``--continue-on-error``; the run key is not ``--batch``, which Luigi
refuses as an ambiguous abbreviation of its own ``--batch-email-*`` options).  In the scheduler's web view each
node is named after its table, ``produit.MergeOds`` (``tasks/labels.py``).  Completeness comes from targets
only: the extract's manifest file, the staging-state row, and the merge marker row (written in the merge's
transaction), so re-running a finished batch runs nothing and re-running after a crash finishes exactly what is
missing.
"""

from __future__ import annotations

from cbm_luigi.config.logs import redact_luigi_console
from cbm_luigi.model.arrow import hold_pandas_off
from cbm_luigi.tasks.table import ExtractParquet, LoadStaging, MergeOds
from cbm_luigi.tasks.wrappers import LoadAll, LoadTable

__all__ = ["ExtractParquet", "LoadAll", "LoadStaging", "LoadTable", "MergeOds"]

# the `luigi` command's console: secrets redacted like cbm-etl's (config/logs.py)
redact_luigi_console()
# pyarrow's first conversion would import pandas, which the data path never uses (model/arrow.py)
hold_pandas_off()
