"""The soak's job: write a row with the job's key on one route, read some back, report.

Every job reports exactly once, whatever happens: "done", or "failed" with the
exception's class and message, and whether its write is known to have been
committed (then its row must exist even though a later read failed). A job
never raises, so no queue retries it behind the soak's back.

A report also says when the guard first found the job's connection on a
read-only node (``connection_invalidated`` with ``reason="read_only"``, sent in
the job's own thread): the soak's failover detection time.
"""

from __future__ import annotations

import functools
import json
import os
import random
import threading
import time
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

import connguard
from connguard import signals
from soak.project.models import Row
from soak.project.queues import REPORTS

# The running job's findings of a read-only node, per thread (the thread pool
# runs four jobs at once); None outside a job.
_current = threading.local()


def _found_read_only(sender: Any, alias: str, reason: str, **kwargs: Any) -> None:
    findings: list[float] | None = getattr(_current, "findings", None)
    if reason == "read_only" and findings is not None and alias == _current.route:
        findings.append(time.time())


signals.connection_invalidated.connect(_found_read_only, dispatch_uid="soak-read-only")


@functools.cache
def _redis(pid: int) -> redis.Redis:
    # One client per process: forked children (Celery's pool, RQ's horses)
    # must not share their parent's sockets.
    return redis.Redis.from_url(settings.REDIS_URL)


def report(data: dict[str, Any]) -> None:
    _redis(os.getpid()).rpush(REPORTS, json.dumps(data))


def _write_and_read(key: str, route: str, worker: str, atomic: bool, state: dict[str, Any]) -> None:
    rows = Row.objects.using(route)
    if atomic:
        with transaction.atomic(using=route):
            rows.create(jkey=key, worker=worker)
            seen = rows.filter(jkey=key).count()
    else:
        rows.create(jkey=key, worker=worker)
        state["written"] = True  # committed: from here on its row must exist
        seen = rows.filter(jkey=key).count()
    state["written"] = True
    # Reads mixed in: a statement the guard may retry on a fresh connection.
    list(rows.filter(worker=worker).order_by("-id").values_list("jkey", flat=True)[:5])
    if seen != 1:
        raise AssertionError(f"read back {seen} rows for key {key}")


def execute(job: dict[str, Any], worker: str) -> None:
    """Run one job and report it. ``job``: key and route, from the producer."""
    started = time.time()
    data: dict[str, Any] = {**job, "worker": worker, "pid": os.getpid(), "started": started}
    state = {"written": False}
    atomic = random.random() < 0.5
    findings: list[float] = []
    _current.findings, _current.route = findings, job["route"]
    try:
        _write_and_read(job["key"], job["route"], worker, atomic, state)
        data.update(status="done")
    except Exception as exc:
        data.update(status="failed", reason=type(exc).__name__, message=str(exc)[:300])
    finally:
        _current.findings = None
    data.update(atomic=atomic, written=state["written"], finished=time.time())
    if findings:
        # The first finding, and how many (each refused connect is one).
        data.update(read_only_at=findings[0], read_only_findings=len(findings))
    report(data)


def run_job(job: dict[str, Any], worker: str) -> None:
    """For the plain loop and the thread pool: the job as its own ``connguard.job()``."""
    with connguard.job():
        execute(job, worker)
