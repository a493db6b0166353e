"""Kill points: a real ``cbm-etl run`` SIGKILLed at each named place of the data path (config/faults.py).

The extract runs in a child process of its own (a driver crash must not take the run down): a kill there fails
the table with a message naming it and the signal, exit 1; a kill in staging or the merge kills the command itself.
At every point before the merge commits, the ODS, the watermarks and the markers are as they were; after the
commit, the batch is merged once.  Either way, running the same command again finishes exactly what is missing:
the ODS then equals the source, the marker is there, no temporary extract is left behind, and a third run runs
nothing.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import duckdb
import pytest
from harness import Site, copy_site, make_base

from cbm_luigi.config.faults import KILL_POINTS

RUN = ("run", "produit", "--mode", "incremental", "--batch-id", "kill-1")
BEFORE_COMMIT = [p for p in KILL_POINTS if p != "merge.committed"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_base(tmp_path_factory.mktemp("kill") / "base")


def change_source(site: Site) -> None:
    """Ten products changed after the last watermark: the incremental batch has work at every step."""
    site.source_sql(
        "UPDATE produit SET designation = designation || ' (v2)', dat_mod = '2099-01-01 00:00:00' "
        "WHERE cod_pro <= 10"
    )


def source_and_ods_agree(site: Site) -> bool:
    with sqlite3.connect(site.source) as c:
        src = sorted((int(r[0]), r[1]) for r in c.execute('SELECT cod_pro, designation FROM produit'))
    con = duckdb.connect(str(site.ods), read_only=True)
    try:
        ods = sorted((int(r[0]), r[1]) for r in con.execute("SELECT cod_pro, designation FROM ods.produit").fetchall())
    finally:
        con.close()
    return src == ods


def leftovers(site: Site) -> list[Path]:
    return list(site.cache.rglob(".tmp-*"))


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_at_each_point_loses_nothing_and_the_rerun_finishes(base: Site, tmp_path: Path, point: str) -> None:
    site = copy_site(base, tmp_path / "site")
    change_source(site)
    before = site.state()

    site.env["CBM_FAULT_KILL_AT"] = point
    killed = site.cbm(*RUN)
    said = killed.stdout + killed.stderr
    if point.startswith("extract."):
        # the extract runs in a child process of its own: its death fails the table, the run goes on and says so
        assert killed.returncode == 1, (point, killed.returncode, said[-1500:])
        assert "signal 9" in said and "produit" in said and "run again" in said
    else:
        assert killed.returncode == -signal.SIGKILL, (point, killed.returncode, said[-1500:])
    after = site.state()
    if point in BEFORE_COMMIT:
        assert after == before, f"killed at {point}: the ODS, a watermark or a marker changed"
    else:
        assert after["markers"] != before["markers"] and "kill-1" in after["markers"]
        assert after["ods.produit"] != before["ods.produit"] and source_and_ods_agree(site)

    del site.env["CBM_FAULT_KILL_AT"]
    rerun = site.cbm(*RUN)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert source_and_ods_agree(site), f"after a kill at {point} and a rerun, ods.produit differs from the source"
    final = site.state()
    assert "MergeOds:produit:kill-1" in final["markers"]
    assert final["markers"].count("kill-1") == 1
    assert leftovers(site) == [], f"temporary extract folders left after the rerun: {leftovers(site)}"

    if point == KILL_POINTS[-1]:  # once is enough to show it (the suite's time): a third run changes nothing
        again = site.cbm(*RUN)
        assert again.returncode == 0 and site.state() == final
