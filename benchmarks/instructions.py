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
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def count_run(spec: dict[str, Any]) -> int:
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
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"callgrind run failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return parse_total(result.stderr)


def per_job(spec: dict[str, Any], short: int, long: int) -> float:
    counts = [count_run({**spec, "mode": "loop", "jobs": jobs}) for jobs in (short, long)]
    return (counts[1] - counts[0]) / (long - short)
