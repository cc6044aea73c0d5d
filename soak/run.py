"""One soak run: start everything, stream jobs under random faults, reconcile, report."""

from __future__ import annotations

import functools
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

from soak import faults, summary, topology
from soak.ledger import reconcile
from soak.producer import Producer
from soak.workers import KINDS, WorkerProcess, worker_env
from testbed.servers import MariaDBServer, PostgreSQLServer

# Generous: Celery and RQ starting on a busy 2-core machine.
STARTUP_DEADLINE = 90.0
# Every job ends within the drivers' timeouts; this is for stuck ones.
DRAIN_DEADLINE = 60.0
# After the last fault, before the final round: restarts are already done, so
# this only lets the in-flight jobs finish.
SETTLE = 2.0
# Progress lines, flushed: CI shows them live even with stdout in a file.
_print = functools.partial(print, flush=True)


def count_rows(top: topology.Topology) -> dict[str, int]:
    """Rows per key over every server, read by the admin clients, not the guard."""
    rows: dict[str, int] = {}
    mysql = f"SELECT jkey, COUNT(*) FROM {top.mariadb.database}.soak_row GROUP BY jkey"
    queries: list[tuple[MariaDBServer | PostgreSQLServer, str]] = [
        (top.mariadb, mysql),
        (top.postgresql, "SELECT jkey, COUNT(*) FROM soak_row GROUP BY jkey"),
    ]
    if top.replicated is not None:
        # The primary only: the replica holds copies of the same rows.
        queries.append((top.replicated.primary, mysql))
    for server, query in queries:
        for line in server.sql(query).splitlines():
            key, _, count = line.replace("|", "\t").partition("\t")
            if key:
                rows[key] = rows.get(key, 0) + int(count)
    return rows


def run(
    duration: float,
    seed: int,
    *,
    workers: tuple[str, ...] = KINDS,
    routes: tuple[str, ...] = topology.ALL_ROUTES,
    kinds: tuple[str, ...] = faults.KINDS,
    gap: tuple[float, float] = faults.GAP,
    log: Any = _print,
) -> dict[str, Any]:
    rng = random.Random(seed)
    started = time.monotonic()
    log(f"soak: seed {seed}, {duration} s, workers {','.join(workers)}, routes {','.join(routes)}")
    top = topology.start(routes)
    log_dir = Path(tempfile.mkdtemp(prefix="connguard-soak-logs-"))
    processes: list[WorkerProcess] = []
    try:
        client = redis.Redis(host=top.redis.host, port=top.redis.port)
        env = worker_env(top.databases(), f"{top.redis.host}:{top.redis.port}")
        processes = [WorkerProcess(kind, env, log_dir, client) for kind in workers]
        producer = Producer(processes, routes, rng, client)
        producer.round(STARTUP_DEADLINE)
        if producer.ledger.missing():
            raise RuntimeError("workers did not start:\n" + _tails(processes))
        log(f"soak: {len(processes)} workers up after {time.monotonic() - started:.0f} s")
        injector = faults.Injector(top, kinds, rng, producer.pause, log, gap)
        until = time.monotonic() + duration
        # Faults run in the main thread: the servers and middleboxes they
        # restart die with the thread that started them (PR_SET_PDEATHSIG is
        # per thread), so a fault thread would take them along when it ends.
        thread = threading.Thread(target=producer.run, args=(until,), name="soak-producer")
        thread.start()
        try:
            injector.run(until)
        finally:
            producer.stop()
            thread.join()
        top.ensure_running()
        producer.drain(DRAIN_DEADLINE)
        time.sleep(SETTLE)
        final = producer.round(DRAIN_DEADLINE)
        ledger = producer.ledger
        stuck = sorted({ledger.sent[key]["worker"] for key in ledger.missing()})
        stuck += [p.name for p in processes if not p.alive() and p.name not in stuck]
        broken = sorted(
            {
                r["worker"]
                for key in final
                if (r := ledger.reports.get(key)) and r["status"] != "done"
            }
        )
        result = reconcile(ledger, count_rows(top))
        report = summary.build(
            injector.faults, ledger, result, stuck, broken, time.monotonic() - started
        )
        if not report["passed"]:
            log(_tails(processes))
        return report
    finally:
        for process in processes:
            process.stop()
        top.stop()
        shutil.rmtree(log_dir, ignore_errors=True)


def _tails(processes: list[WorkerProcess]) -> str:
    return "\n".join(f"--- {p.name} log:\n{p.log_tail()}" for p in processes)
