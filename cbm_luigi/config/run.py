"""The run id: one UUID per process invocation (the ``cbm-etl`` or ``luigi`` command that started the run).

Set ``CBM_RUN_ID`` to share one id across the worker processes of several machines.
"""

from __future__ import annotations

import os
import uuid

RUN_ID = os.environ.get("CBM_RUN_ID") or str(uuid.uuid4())
