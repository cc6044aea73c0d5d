"""The benchmark still runs: ``python -m benchmarks.run --smoke``, tiny job counts.

Checks the shape of ``results.json``, the charts, and what is counted on the
wire, never a timing: speed figures come from the benchmark itself
(``benchmarks/README.md``), not from tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = [
    "stock",
    "reconnect",
    "health_checks",
    "sqlalchemy_pool",
    "connguard",
    "connguard_job",
    "control",
]
VENDORS = ["mysql", "postgresql"]

# The benchmark picks its own drivers (mysqlclient + psycopg 3) and servers, so
# the PyMySQL + psycopg2 pass of scripts/test would only repeat it.
pytestmark = pytest.mark.skipif(
    os.environ.get("CONNGUARD_TEST_MYSQL_DRIVER", "mysqlclient") != "mysqlclient",
    reason="runs once, in the mysqlclient + psycopg pass",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("benchmark")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((out / "results.json").read_text()), out


def test_results_have_every_section(run: tuple[dict[str, Any], Path]) -> None:
    results, _ = run
    assert results["schema"] == 1
    assert results["smoke"] is True
    assert results["upper_bound"] == "stock"
    assert list(results["strategies"]) == STRATEGIES
    for vendor in VENDORS:
        assert results["environment"]["servers"][vendor]
        assert list(results["round_trips"][vendor]) == STRATEGIES
        rows = results["throughput"][vendor]
        assert list(rows) == STRATEGIES
        for row in rows.values():
            assert len(row["jobs_per_s_rounds"]) == results["config"]["rounds"]
            assert row["jobs_per_s_median"] > 0
            assert row["ratio_to_upper_bound"] > 0
            assert row["cpu_us_per_job_median"] > 0
            assert row["cpu_ratio_to_upper_bound"] > 0
            latency = row["latency_us"]
            assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
            low, high = row["ratio_ci95"]
            assert low <= row["ratio_to_upper_bound"] <= high
            assert row["jobs_per_block"] >= 20
        assert rows["stock"]["ratio_to_upper_bound"] == 1.0
        assert rows["stock"]["ratio_ci95"] == [1.0, 1.0]


def test_workers_and_servers_pinned_to_one_cpu(run: tuple[dict[str, Any], Path]) -> None:
    results, _ = run
    cpus = sorted(os.sched_getaffinity(0))
    assert results["config"]["pinned_cpus"] == (cpus[-1:] if len(cpus) > 1 else None)


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind not installed")
def test_instructions_counted_by_callgrind(run: tuple[dict[str, Any], Path]) -> None:
    results, _ = run
    counted = results["instructions"]
    assert list(counted) == ["mysql"]  # the smoke run counts one vendor
    assert list(counted["mysql"]) == ["stock", "connguard"]
    stock, guarded = counted["mysql"]["stock"], counted["mysql"]["connguard"]
    # A SELECT and an UPDATE through the ORM: hundreds of thousands of instructions.
    assert stock["instructions_per_job"] > 100_000
    assert stock["extra_per_job"] == 0
    extra = guarded["instructions_per_job"] - stock["instructions_per_job"]
    assert guarded["extra_per_job"] == extra


def test_median_interval_and_callgrind_parsing() -> None:
    from benchmarks.instructions import parse_total
    from benchmarks.run import median_ci

    low, high = median_ci([1.0, 2.0, 3.0, 4.0, 100.0])
    assert 1.0 <= low <= 3.0 <= high <= 100.0
    assert median_ci([0.97] * 9) == (0.97, 0.97)
    stderr = "==1== Events    : Ir\n==1== Collected : 1823677\n==1==\n==1== I   refs:  1,823,677\n"
    assert parse_total(stderr) == 1823677
    with pytest.raises(RuntimeError, match="no instruction count"):
        parse_total("valgrind: command not found")


def test_scaling_covers_every_thread_and_job_count(run: tuple[dict[str, Any], Path]) -> None:
    results, _ = run
    config = results["config"]
    points = {(row["vendor"], row["threads"], row["jobs"]) for row in results["scaling"]}
    for vendor in VENDORS:
        assert {jobs for v, _, jobs in points if v == vendor} == set(config["scaling_jobs"])
        assert {threads for v, threads, _ in points if v == vendor} == set(config["threads"])
    for row in results["scaling"]:
        for key in ("stock", "connguard"):
            assert row[key]["jobs_per_s"] > 0
            assert row[key]["latency_us"]["p99"] > 0


def test_round_trips_counted_on_the_wire(run: tuple[dict[str, Any], Path]) -> None:
    results, _ = run
    for vendor in VENDORS:
        counts = results["round_trips"][vendor]
        # A SELECT and an UPDATE: two requests, each answered.
        assert counts["stock"]["round_trips_per_job"] == 2
        assert counts["stock"]["connections_per_job"] == 0
        for key in ("connguard", "connguard_job", "control"):
            # Not one extra round trip, not one extra byte sent, no ping, no
            # reconnect. (Replies can differ by a digit: the UPDATEs count up.)
            assert counts[key]["extra_round_trips_per_job"] == 0
            for measure in ("bytes_up_per_job", "connections_per_job"):
                assert counts[key][measure] == counts["stock"][measure]
        for key in ("connguard", "connguard_job"):
            assert counts[key]["connguard_stats"] == {}
        assert counts["health_checks"]["extra_round_trips_per_job"] == 1  # a ping per job
        assert counts["reconnect"]["connections_per_job"] == 1
        assert counts["reconnect"]["extra_round_trips_per_job"] >= 3  # handshake, setup
        assert counts["sqlalchemy_pool"]["extra_round_trips_per_job"] >= 1  # pre-ping


def test_recovery_measured_for_each_method(run: tuple[dict[str, Any], Path]) -> None:
    results, _ = run
    for vendor in VENDORS:
        recovery = results["recovery"][vendor]
        assert set(recovery["methods"]) == {"connguard", "reconnect", "health_checks"}
        for measures in recovery["methods"].values():
            assert measures["kill_to_success_ms"]["median"] > 0
            assert measures["closed_to_success_ms"]["median"] > 0
        # Each kill was noticed by the guard, and the connection replaced.
        assert sum(recovery["connguard_paths"].values()) == recovery["trials"]


def test_charts_are_pngs(run: tuple[dict[str, Any], Path]) -> None:
    _, out = run
    for name in ("throughput.png", "scaling.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
