"""Kill points for the reliability tests: ``CBM_FAULT_KILL_AT=<point>`` makes this process SIGKILL itself there.

A real kill of a real process, at a named place of the data path, so that the tests of ``tests/reliability/``
can show that a crash at any step leaves nothing half-written and that a rerun finishes exactly what is missing.
Unset (always, in production) it costs one dictionary look-up per call.  The points:

=======================  ===============================================================================
``extract.batch``        after the first record batch is written to the temporary extract directory
``extract.before_rename``  the extract complete in its temporary directory, not yet renamed
``extract.after_rename``  the extract renamed (complete on disk), its run-log rows not yet written
``stage.emptied``        staging emptied inside its transaction, not yet loaded
``stage.loaded``         staging emptied and loaded, inside its transaction, before the commit
``stage.committed``      staging committed with its batch, before the task is reported done
``merge.begun``          the merge's transaction open, its staging checked, the ODS not yet touched
``merge.merged``         the MERGE done inside the merge's transaction, watermark and marker not yet written
``merge.marked``         watermark, marker and run-log rows written, before the commit
``merge.committed``      the merge committed, before the task is reported done
=======================  ===============================================================================
"""

from __future__ import annotations

import os
import signal

KILL_POINTS = ("extract.batch", "extract.before_rename", "extract.after_rename", "stage.emptied", "stage.loaded",
               "stage.committed", "merge.begun", "merge.merged", "merge.marked", "merge.committed")


def kill_point(name: str) -> None:
    """SIGKILL this process when ``CBM_FAULT_KILL_AT`` names this point (tests only)."""
    if os.environ.get("CBM_FAULT_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
