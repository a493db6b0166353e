"""Luigi targets on the ODS database: the merge marker and the staging state.
"""

from __future__ import annotations

import luigi

from cbm_luigi.destinations import open_target
from cbm_luigi.store.markers import marker_exists
from cbm_luigi.store.staging_state import staging_state
from cbm_luigi.tasks.context import canonical_table, metadata_ready


class MarkerTarget(luigi.Target):
    """Exists when the MergeOds marker row for (table, batch) is in etl.ETL_Markers."""

    def __init__(self, url: str, table: str, batch: str) -> None:
        self.url, self.table, self.batch = url, table, batch

    def exists(self) -> bool:
        t = open_target(self.url)
        if not metadata_ready(self.url):
            return False
        return marker_exists(t, canonical_table(self.url, self.table), self.batch)


class StagingTarget(luigi.Target):
    """Exists when stg.<table> holds this batch (etl.ETL_StagingState, written with the data)."""

    def __init__(self, url: str, table: str, batch: str) -> None:
        self.url, self.table, self.batch = url, table, batch

    def exists(self) -> bool:
        t = open_target(self.url)
        if not metadata_ready(self.url):
            return False
        state = staging_state(t, canonical_table(self.url, self.table))
        return state is not None and state.batch == self.batch
