"""The run id: one UUID per process invocation (the ``cbm-etl`` or ``luigi`` command that started the run), and
when that run started.

Set ``CBM_RUN_ID`` to share one id across the worker processes of several machines.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime

RUN_ID = os.environ.get("CBM_RUN_ID") or str(uuid.uuid4())
#: when this process started its run (local time, to the second, like the timestamps of etl.ETL_Alerts); the
#: worker processes Luigi forks inherit it
RUN_STARTED = datetime.now().replace(microsecond=0)
