"""The fault-injection soak, briefly: two workers, two routes, every fault that applies.

The full soak is ``scripts/soak`` (soak/README.md); this proves the machinery
and the guard's promise on a subset in about 30 seconds: nothing lost, nothing
duplicated, no worker stuck, and every fault kind really applied. Not timings.
"""

from __future__ import annotations

import shutil

import pytest

from soak.run import run

pytestmark = pytest.mark.skipif(
    not shutil.which("haproxy"), reason="haproxy not installed (scripts/bootstrap installs it)"
)


def test_soak_smoke() -> None:
    kinds = ("kill", "restart", "idle", "middlebox")
    report = run(
        20,
        seed=1234,
        workers=("plain", "threads"),
        routes=("mysql_direct", "mysql_haproxy"),
        kinds=kinds,
        gap=(0.5, 1.5),  # so that every kind fits in 20 s
        log=lambda text: None,
    )
    assert report["duplicates"] == 0
    assert report["lost"] == 0
    assert report["wrong_row_counts"] == []
    assert report["stuck_workers"] == []
    assert report["workers_not_recovered"] == []
    assert report["faults_not_applied"] == []
    assert set(report["faults"]) == set(kinds), report["faults"]
    assert report["jobs_done"] > 0
    assert report["passed"]
