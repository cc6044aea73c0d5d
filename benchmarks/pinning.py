"""CPU pinning: the benchmark's workers and servers on one CPU, everything else off it.

On a small virtual machine a loopback round trip between a worker and a server
on different CPUs costs a wake-up of an idle virtual CPU, and how much that
costs changes from moment to moment: two blocks of the same strategy differed
by 14 % on this project's 2-CPU machine. On one CPU the worker hands the CPU to
the server and back, which is what a busy server does anyway; blocks then differ
by about half as much. Every strategy runs under the same pinning, so the
ratios stay fair, and the client's own cost weighs more in them, not less,
because the round trips get cheaper.

Linux only (``os.sched_setaffinity`` and ``/proc``); elsewhere nothing is pinned.
"""

from __future__ import annotations

import os
from pathlib import Path


def available() -> set[int]:
    if not hasattr(os, "sched_getaffinity"):
        return set()
    return set(os.sched_getaffinity(0))


def plan(enabled: bool) -> tuple[set[int], set[int]] | None:
    """(CPUs for the measured processes, CPUs for the rest), or None: no pinning."""
    cpus = sorted(available())
    if not enabled or len(cpus) < 2:
        return None
    return {cpus[-1]}, set(cpus[:-1])


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass  # the thread or process has just exited
    return children


def pin_tree(pid: int, cpus: set[int]) -> int:
    """Pin every thread of ``pid`` and of its descendants; return how many.

    Threads and processes started later inherit the affinity of the one that
    starts them, so MariaDB's connection threads and PostgreSQL's backends
    follow their server.
    """
    pinned = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                os.sched_setaffinity(int(task.name), cpus)
                pinned += 1
            except OSError:
                pass
        todo += _children(current)
    return pinned


def pin_self(cpus: set[int]) -> None:
    os.sched_setaffinity(0, cpus)
