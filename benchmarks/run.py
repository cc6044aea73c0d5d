"""Worker throughput on short jobs: six connection strategies on MariaDB and PostgreSQL.

Starts throwaway servers on 127.0.0.1 (``testbed.servers``) and one worker
process per strategy and server (``benchmarks.worker``), which take turns block
by block, in an order that rotates every round, so that drift and bursts of
other work on the machine hit every strategy alike. The worker processes are
started afresh every ``--respawn`` rounds, so that no strategy keeps a lucky or
an unlucky process (memory layout, hash seed) for the whole run; each block
opens its own connection. Workers and servers share one CPU
(``benchmarks.pinning``; ``--no-pin`` to turn that off). Measures:

* round trips, bytes and connections per job, counted through a proxy
  (``benchmarks.wire``), in a separate process per strategy;
* the worker's CPU instructions per job, counted by callgrind
  (``benchmarks.instructions``): the one figure the machine's noise cannot touch;
* throughput, latency and the worker's CPU time per job, one thread, over
  ``--rounds`` rounds of blocks of about ``--block-ms`` each;
* scaling: 1k, 10k and 100k jobs on one thread, and 4 and 16 threads on 10k;
* recovery: the time from a server-side kill to the first successful statement.

Writes ``results.json``, ``summary.md`` (the tables, also printed) and the
charts to ``--out``.

    python -m benchmarks.run --out benchmarks/results/   # about 15 minutes
    python -m benchmarks.run --smoke --out /tmp/bench    # tiny counts, about a minute
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

from benchmarks import instructions, pinning
from benchmarks.report import markdown
from benchmarks.strategies import ROWS, STRATEGIES, UPPER_BOUND, VENDORS
from testbed.servers import MariaDBServer, PostgreSQLServer

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_VERSION = 1
SCALING_STRATEGIES = ["stock", "connguard"]
# The strategies whose difference from stock is small enough to need counting.
INSTRUCTION_STRATEGIES = ["stock", "connguard", "connguard_job", "control"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--rounds", type=int, default=80, help="interleaved rounds (default 80)")
    parser.add_argument(
        "--block-ms",
        type=float,
        default=250,
        help="a block lasts about this long: its job count comes from a calibration block",
    )
    parser.add_argument(
        "--jobs", type=int, default=200, help="jobs in each strategy's calibration block"
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="untimed jobs per thread before each block"
    )
    parser.add_argument(
        "--respawn", type=int, default=4, help="start fresh worker processes every N rounds"
    )
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin workers and servers"
    )
    parser.add_argument(
        "--no-instructions",
        dest="instructions",
        action="store_false",
        help="skip the callgrind count (also skipped when valgrind is missing)",
    )
    parser.add_argument(
        "--instruction-jobs",
        type=_ints,
        default=[100, 400],
        help="callgrind: the two job counts whose difference is counted",
    )
    parser.add_argument("--count-jobs", type=int, default=500, help="jobs per round-trip count")
    parser.add_argument("--threads", type=_ints, default=[1, 4, 16], help="scaling: threads")
    parser.add_argument(
        "--scaling-jobs", type=_ints, default=[1000, 10000, 100000], help="scaling: job counts"
    )
    parser.add_argument("--trials", type=int, default=20, help="recovery: kills per method")
    parser.add_argument("--vendors", type=_names, default=list(VENDORS))
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny counts, to check that the benchmark runs (no meaningful speed figures)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.jobs, args.warmup, args.count_jobs = 3, 40, 5, 20
        args.block_ms, args.respawn = 20, 2
        args.threads, args.scaling_jobs, args.trials = [1, 4], [40, 80], 2
        args.instruction_jobs = [5, 15]
    return args


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def _names(text: str) -> list[str]:
    names = text.split(",")
    unknown = set(names) - set(VENDORS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown vendors {sorted(unknown)}; use {list(VENDORS)}")
    return names


# ##### servers #####


def start_servers(vendors: list[str]) -> dict[str, MariaDBServer | PostgreSQLServer]:
    servers: dict[str, MariaDBServer | PostgreSQLServer] = {}
    try:
        for vendor in vendors:
            server = MariaDBServer() if vendor == "mysql" else PostgreSQLServer()
            servers[vendor] = server
            server.start()
            create_table(vendor, server)
    except BaseException:
        stop_servers(servers)
        raise
    return servers


def stop_servers(servers: dict[str, MariaDBServer | PostgreSQLServer]) -> None:
    for server in servers.values():
        server.stop()


def create_table(vendor: str, server: MariaDBServer | PostgreSQLServer) -> None:
    create = (
        "DROP TABLE IF EXISTS bench_item; CREATE TABLE bench_item "
        "(id integer PRIMARY KEY, counter integer NOT NULL, payload varchar(64) NOT NULL);"
    )
    if isinstance(server, MariaDBServer):
        server.sql(
            f"USE {server.database}; {create}"
            f"INSERT INTO bench_item SELECT seq, 0, 'payload' FROM seq_1_to_{ROWS};"
        )
    else:
        server.sql(
            f"SET client_min_messages = warning; {create}"
            f"INSERT INTO bench_item SELECT g, 0, 'payload' FROM generate_series(1, {ROWS}) g;"
        )
        server.sql("VACUUM ANALYZE bench_item")


def server_version(server: MariaDBServer | PostgreSQLServer) -> str:
    if isinstance(server, MariaDBServer):
        return server.sql("SELECT VERSION()").strip()
    return server.sql("SHOW server_version").strip()


def connection_spec(server: MariaDBServer | PostgreSQLServer) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.port,
        "name": server.database,
        "user": server.user,
        "password": server.password,
    }


# ##### worker processes #####


def spawn(spec: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(
            f"benchmark worker failed ({result.returncode}) for {spec}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def percentiles(values: list[float] | array[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(fraction: float) -> float:
        # Nearest rank: a latency some job really had.
        return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]

    return {
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "mean": statistics.fmean(ordered),
    }


class BlockWorker:
    """One strategy's process on one vendor, kept up to run block after block.

    Call ``ready()`` before the first block: starting several workers and then
    waiting for them all lets them set Django up in parallel.
    """

    def __init__(self, strategy: str, vendor: str, server: Any, scratch: Path) -> None:
        self.name = f"{vendor}-{strategy}"
        self.latencies_path = scratch / f"{self.name}.lat"
        spec = {"mode": "blocks", "strategy": strategy, "vendor": vendor}
        spec["server"] = connection_spec(server)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ready(self, cpus: set[int] | None) -> None:
        self._answer()  # Django is set up
        if cpus is not None:
            # After the set-up, which may use every CPU; the block's threads,
            # started later, inherit this.
            pinning.pin_tree(self.process.pid, cpus)

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker {self.name} died (exit {self.process.wait()})")
        return dict(json.loads(line))

    def run(self, **block: Any) -> tuple[dict[str, Any], array[float]]:
        """One block of jobs; its result and its jobs' latencies (µs)."""
        assert self.process.stdin is not None
        block["latencies"] = str(self.latencies_path)
        self.process.stdin.write(json.dumps(block) + "\n")
        self.process.stdin.flush()
        result = self._answer()
        latencies = array("d")
        latencies.frombytes(self.latencies_path.read_bytes())
        return result, latencies

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(60)


class Workers:
    """One ``BlockWorker`` per strategy and vendor, started afresh on ``respawn()``."""

    def __init__(
        self, strategies: list[str], servers: dict[str, Any], scratch: Path, cpus: set[int] | None
    ) -> None:
        self.strategies, self.servers, self.scratch, self.cpus = strategies, servers, scratch, cpus
        self.workers: dict[tuple[str, str], BlockWorker] = {}

    def respawn(self) -> None:
        self.close()
        for vendor, server in self.servers.items():
            for strategy in self.strategies:
                worker = BlockWorker(strategy, vendor, server, self.scratch)
                self.workers[vendor, strategy] = worker
        for worker in self.workers.values():
            worker.ready(self.cpus)

    def __getitem__(self, key: tuple[str, str]) -> BlockWorker:
        return self.workers[key]

    def vendors(self) -> list[str]:
        return sorted({vendor for vendor, _ in self.workers})

    def close(self) -> None:
        workers, self.workers = list(self.workers.values()), {}
        for worker in workers:
            worker.close()


def rotated(items: list[str], by: int) -> list[str]:
    by %= len(items)
    return items[by:] + items[:by]


def median_ci(values: list[float], *, resamples: int = 2000) -> tuple[float, float]:
    """A 95 % bootstrap interval for the median of ``values`` (resampling rounds)."""
    rng = random.Random(0)  # the same interval for the same figures
    medians = sorted(
        statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples)
    )
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


# ##### the measurements #####


def measure_round_trips(
    args: argparse.Namespace, servers: dict[str, Any], log: Any
) -> dict[str, dict[str, Any]]:
    counts: dict[str, dict[str, Any]] = {}
    for vendor, server in servers.items():
        counts[vendor] = {}
        for strategy in STRATEGIES:
            counted = spawn(
                {
                    "mode": "count",
                    "strategy": strategy.key,
                    "vendor": vendor,
                    "server": connection_spec(server),
                    "jobs": args.count_jobs,
                    "warmup": 20,
                    "seed": 1,
                }
            )
            counts[vendor][strategy.key] = counted
        stock = counts[vendor][UPPER_BOUND]["round_trips_per_job"]
        for counted in counts[vendor].values():
            counted["extra_round_trips_per_job"] = counted["round_trips_per_job"] - stock
        log(f"  round trips counted on {VENDORS[vendor]}")
    return counts


def calibrate(args: argparse.Namespace, workers: Workers) -> dict[tuple[str, str], int]:
    """Jobs per block for each strategy: about ``--block-ms`` of work at its speed."""
    sizes = {}
    for vendor in workers.vendors():
        for key in (strategy.key for strategy in STRATEGIES):
            result, _ = workers[vendor, key].run(
                jobs=args.jobs, threads=1, warmup=args.warmup, seed=999
            )
            sizes[vendor, key] = max(20, round(result["jobs_per_s"] * args.block_ms / 1000))
    return sizes


def measure_throughput(
    args: argparse.Namespace, workers: Workers, log: Any
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], int]]:
    """Round after round, one block per strategy and vendor, in a rotating order."""
    vendors = workers.vendors()
    keys = [strategy.key for strategy in STRATEGIES]
    sizes = calibrate(args, workers)
    rates: dict[str, dict[str, list[float]]] = {v: {k: [] for k in keys} for v in vendors}
    cpu: dict[str, dict[str, list[float]]] = {v: {k: [] for k in keys} for v in vendors}
    pooled: dict[str, dict[str, array[float]]] = {v: {k: array("d") for k in keys} for v in vendors}
    for round_ in range(args.rounds):
        if round_ and round_ % args.respawn == 0:
            workers.respawn()
        for vendor in rotated(vendors, round_):
            for key in rotated(keys, round_):
                result, latencies = workers[vendor, key].run(
                    jobs=sizes[vendor, key], threads=1, warmup=args.warmup, seed=round_
                )
                rates[vendor][key].append(result["jobs_per_s"])
                cpu[vendor][key].append(result["cpu_us_per_job"])
                pooled[vendor][key].extend(latencies)
        if (round_ + 1) % 10 == 0 or round_ + 1 == args.rounds:
            log(f"  throughput: {round_ + 1}/{args.rounds} rounds")
    summary: dict[str, dict[str, Any]] = {}
    for vendor in vendors:
        upper = rates[vendor][UPPER_BOUND]
        stock_cpu = cpu[vendor][UPPER_BOUND]
        summary[vendor] = {}
        for key in keys:
            # Paired within each round (the blocks ran a second or two apart),
            # then the median over rounds: robust to drift and to bursts of load.
            ratios = [rate / base for rate, base in zip(rates[vendor][key], upper, strict=True)]
            # The same from the worker's CPU time: stock's CPU per job over this
            # strategy's, so that 0.98 means 2 % more CPU per job than stock.
            cpu_ratios = [
                base / used for used, base in zip(cpu[vendor][key], stock_cpu, strict=True)
            ]
            summary[vendor][key] = {
                "jobs_per_block": sizes[vendor, key],
                "jobs_per_s_median": statistics.median(rates[vendor][key]),
                "jobs_per_s_rounds": [round(rate, 1) for rate in rates[vendor][key]],
                "ratio_to_upper_bound": statistics.median(ratios),
                "ratio_ci95": median_ci(ratios),
                "latency_us": percentiles(pooled[vendor][key]),
                "cpu_us_per_job_median": statistics.median(cpu[vendor][key]),
                "cpu_ratio_to_upper_bound": statistics.median(cpu_ratios),
            }
    return summary, sizes


def measure_instructions(
    args: argparse.Namespace, servers: dict[str, Any], log: Any
) -> dict[str, dict[str, Any]]:
    short, long = args.instruction_jobs
    counted: dict[str, dict[str, Any]] = {}
    # The smoke run counts the first vendor's stock and connguard only: each
    # count is two runs under valgrind, several seconds each.
    vendors = list(servers)[:1] if args.smoke else list(servers)
    keys = INSTRUCTION_STRATEGIES[:2] if args.smoke else INSTRUCTION_STRATEGIES
    for vendor in vendors:
        spec = {"vendor": vendor, "server": connection_spec(servers[vendor])}
        counted[vendor] = instructions.count(spec, keys, short, long)
        log(f"  instructions counted on {VENDORS[vendor]}")
    return counted


def scaling_points(args: argparse.Namespace) -> list[tuple[int, int]]:
    """(threads, jobs): every job count on one thread, every thread count on the middle count."""
    counts = sorted(args.scaling_jobs)
    middle = counts[len(counts) // 2]
    points = [(args.threads[0], jobs) for jobs in counts]
    points += [(threads, middle) for threads in args.threads[1:]]
    return points


def measure_scaling(args: argparse.Namespace, workers: Workers, log: Any) -> list[dict[str, Any]]:
    vendors = workers.vendors()
    points = []
    for threads, jobs in scaling_points(args):
        for vendor in vendors:
            row: dict[str, Any] = {"vendor": vendor, "threads": threads, "jobs": jobs}
            for key in rotated(SCALING_STRATEGIES, len(points)):
                result, latencies = workers[vendor, key].run(
                    jobs=jobs, threads=threads, warmup=args.warmup, seed=7
                )
                row[key] = {
                    "jobs_per_s": result["jobs_per_s"],
                    "us_per_job": 1e6 / result["jobs_per_s"],
                    "cpu_us_per_job": result["cpu_us_per_job"],
                    "latency_us": percentiles(latencies),
                }
            for key in SCALING_STRATEGIES:
                row[key]["ratio_to_upper_bound"] = (
                    row[key]["jobs_per_s"] / row[UPPER_BOUND]["jobs_per_s"]
                )
            points.append(row)
        log(f"  scaling: {threads} threads, {jobs} jobs")
    return points


def measure_recovery(
    args: argparse.Namespace, servers: dict[str, Any], log: Any
) -> dict[str, dict[str, Any]]:
    recovery: dict[str, dict[str, Any]] = {}
    for vendor, server in servers.items():
        result = spawn(
            {
                "mode": "recovery",
                "vendor": vendor,
                "server": connection_spec(server),
                "trials": args.trials,
                "cpus": sorted(args.measured_cpus or []),
            }
        )
        recovery[vendor] = {
            "trials": result["trials"],
            "connguard_paths": result["connguard_paths"],
            "methods": {
                method: {
                    measure: {
                        "median": statistics.median(values),
                        "p90": percentiles(values)["p90"],
                    }
                    for measure, values in samples.items()
                }
                for method, samples in result["samples"].items()
            },
        }
        log(f"  recovery measured on {VENDORS[vendor]}")
    return recovery


# ##### the report #####


def environment(servers: dict[str, Any]) -> dict[str, Any]:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        # Other work on the machine shows in every figure: record how busy it was.
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        "commit": commit or None,
        "servers": {vendor: server_version(server) for vendor, server in servers.items()},
        "packages": {
            name: version(name)
            for name in (
                "django",
                "django-connguard",
                "mysqlclient",
                "psycopg",
                "django-db-connection-pool",
                "sqlalchemy",
            )
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s]{message}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    log(" starting servers")
    servers = start_servers(args.vendors)
    plan = pinning.plan(args.pin)
    args.measured_cpus = plan[0] if plan else None
    if plan is not None:
        measured, rest = plan
        for server in servers.values():
            assert server.process is not None
            pinning.pin_tree(server.process.pid, measured)
        pinning.pin_self(rest)
        log(
            f" pinned the servers and workers to CPU {sorted(measured)}, the rest to {sorted(rest)}"
        )
    count_instructions = args.instructions and instructions.valgrind() is not None
    try:
        with tempfile.TemporaryDirectory(prefix="connguard-bench-") as scratch:
            results: dict[str, Any] = {
                "schema": SCHEMA_VERSION,
                "command": " ".join(["python -m benchmarks.run", *(argv or sys.argv[1:])]),
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "smoke": args.smoke,
                "config": {
                    "rounds": args.rounds,
                    "jobs": args.jobs,
                    "warmup": args.warmup,
                    "count_jobs": args.count_jobs,
                    "block_ms": args.block_ms,
                    "respawn": args.respawn,
                    "pinned_cpus": sorted(args.measured_cpus) if args.measured_cpus else None,
                    "instruction_jobs": args.instruction_jobs if count_instructions else None,
                    "threads": args.threads,
                    "scaling_jobs": args.scaling_jobs,
                    "trials": args.trials,
                    "rows": ROWS,
                },
                "environment": environment(servers),
                "strategies": {
                    s.key: {"label": s.label, "engine": s.engine, "boundary": s.boundary}
                    for s in STRATEGIES
                },
                "upper_bound": UPPER_BOUND,
            }
            results["round_trips"] = measure_round_trips(args, servers, log)
            if count_instructions:
                results["instructions"] = measure_instructions(args, servers, log)
            else:
                log("  instructions not counted (--no-instructions, or no valgrind)")
            workers = Workers(
                [s.key for s in STRATEGIES], servers, Path(scratch), args.measured_cpus
            )
            try:
                workers.respawn()
                results["throughput"], _ = measure_throughput(args, workers, log)
                results["scaling"] = measure_scaling(args, workers, log)
            finally:
                workers.close()
            results["recovery"] = measure_recovery(args, servers, log)
    finally:
        stop_servers(servers)
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["environment"]["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    summary = markdown(results)
    (args.out / "summary.md").write_text(summary + "\n")
    from benchmarks.chart import draw

    charts = draw(results, args.out)
    print(summary)
    written = [args.out / "results.json", args.out / "summary.md", *charts]
    log(f" wrote {', '.join(map(str, written))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
