"""The worker's own cost per job in CPU instructions, counted by callgrind.

Throughput on a shared virtual machine moves by several per cent from one block
to the next, more than the difference this benchmark has to show between stock
Django and connguard. Instructions do not move: valgrind's callgrind counts
every instruction the worker process executes, whatever else the machine is
doing, and the same program with the same inputs gives the same count (to a few
dozen instructions in 1.8 million, with ``PYTHONHASHSEED`` fixed).

Each strategy runs twice under callgrind, ``short`` and ``long`` jobs after
the same warm-up; the difference over the extra jobs is the count per job, with
Python's start-up and Django's set-up cancelled out. The servers' work is not
counted: the round-trip count shows it is the same for stock and connguard.

``benchmarks.run`` counts them as part of a full run. On its own, this module
starts throwaway servers and prints the count per job of the stock loop, the
guarded loop and the guarded loop in ``connguard.job()``, and of ``job()``
around an empty block, which is job()'s own cost:

    python -m benchmarks.instructions [--vendors mysql] [--hash-seeds 0,1,2]

The difference between two strategies also moves with where CPython's type
attribute cache happens to collide, which changes with any change of code
or settings: by several thousand instructions per job on PostgreSQL (the same
guarded loop with ``CONN_MAX_AGE`` 0 and None differs by 16,000). The empty
block has no such neighbour to differ from. ``--hash-seeds`` repeats every
count under other ``PYTHONHASHSEED`` values, which move the collisions, and
prints the median and the range.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.strategies import BY_KEY, UPPER_BOUND, VENDORS

ROOT = Path(__file__).resolve().parent.parent
_TOTAL = re.compile(r"Collected : (\d+)")


def valgrind() -> str | None:
    return shutil.which("valgrind")


def parse_total(stderr: str) -> int:
    """The instruction count from callgrind's closing lines."""
    match = _TOTAL.search(stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{stderr[-2000:]}")
    return int(match.group(1))


def count_run(spec: dict[str, Any], hash_seed: int = 0) -> int:
    """Instructions executed by one ``benchmarks.worker`` loop run."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.worker",
        json.dumps(spec),
    ]
    # A fixed hash seed: with a random one, dict and set layouts differ from run
    # to run, and so do the counts, by about 0.5 %.
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"callgrind run failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return parse_total(result.stderr)


def per_job(spec: dict[str, Any], short: int, long: int, hash_seed: int = 0) -> float:
    counts = [
        count_run({**spec, "mode": "loop", "jobs": jobs}, hash_seed) for jobs in (short, long)
    ]
    return (counts[1] - counts[0]) / (long - short)


def count(
    spec: dict[str, Any], keys: list[str], short: int, long: int, hash_seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Instructions per job of each strategy in ``keys`` (the upper bound first), and the extra."""
    per_job_of = {
        key: round(
            per_job({**spec, "strategy": key, "warmup": 50, "seed": 3}, short, long, hash_seed)
        )
        for key in keys
    }
    base = per_job_of[UPPER_BOUND]
    return {
        key: {
            "instructions_per_job": value,
            "extra_per_job": value - base,
            "extra_fraction": (value - base) / base,
        }
        for key, value in per_job_of.items()
    }


# The stock loop, the guarded loop, and the guarded loop in job(); then job()
# around nothing, after the first BARE_JOBS[0], once CPython has specialised
# the code (its adaptive interpreter settles within a few thousand runs).
COMMAND_STRATEGIES = [UPPER_BOUND, "connguard", "connguard_job"]
BARE_JOBS = (2000, 12000)


def bare_per_job(spec: dict[str, Any], hash_seed: int = 0) -> float:
    """Instructions of one ``with connguard.job(): pass`` on a connected guarded wrapper."""
    bare = {**spec, "strategy": "connguard_job", "warmup": 50, "seed": 3, "bare": True}
    return per_job(bare, *BARE_JOBS, hash_seed)


def _line(label: str, values: list[float], base: float | None = None) -> str:
    middle = statistics.median(values)
    text = f"  {label:<34} {middle:>12,.0f}"
    if base is not None:
        text += f" {middle - base:>+10,.0f}"
    if len(values) > 1:
        text += f"   (range {min(values):,.0f} to {max(values):,.0f})"
    return text


def main(argv: list[str] | None = None) -> int:
    from benchmarks import run  # it imports this module

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions",
        description="Instructions per job under callgrind: stock, connguard, connguard in job().",
    )
    parser.add_argument("--jobs", type=run._ints, default=[100, 400], help="the two job counts")
    parser.add_argument("--vendors", type=run._names, default=list(VENDORS))
    parser.add_argument(
        "--hash-seeds", type=run._ints, default=[0], help="PYTHONHASHSEED values (median)"
    )
    args = parser.parse_args(argv)
    if valgrind() is None:
        parser.error("valgrind is not installed (scripts/bootstrap installs it)")
    short, long = args.jobs
    servers = run.start_servers(args.vendors)
    try:
        for vendor, server in servers.items():
            spec = {"vendor": vendor, "server": run.connection_spec(server)}
            runs = [
                {
                    "strategies": count(spec, COMMAND_STRATEGIES, short, long, seed),
                    "bare": bare_per_job(spec, seed),
                }
                for seed in args.hash_seeds
            ]
            seeds = ",".join(map(str, args.hash_seeds))
            print(f"{VENDORS[vendor]}: instructions per job (PYTHONHASHSEED {seeds})")
            stock = [r["strategies"][UPPER_BOUND]["instructions_per_job"] for r in runs]
            for key in COMMAND_STRATEGIES:
                values = [r["strategies"][key]["instructions_per_job"] for r in runs]
                base = None if key == UPPER_BOUND else statistics.median(stock)
                print(_line(f"{BY_KEY[key].label}", values, base))
            print(f"    ({long} jobs less {short})")
            print(_line("connguard.job() around nothing", [r["bare"] for r in runs]))
            print(f"    ({BARE_JOBS[1]} jobs less {BARE_JOBS[0]})", flush=True)
    finally:
        run.stop_servers(servers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
