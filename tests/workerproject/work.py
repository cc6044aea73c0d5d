"""The job every queue runs: ORM reads and writes on both servers, then a report.

The report goes to a Redis list that the test reads, whatever happened: a job
that fails records its error instead of raising, so no queue retries it and
the test sees every outcome in order.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from typing import Any

import redis
from django.conf import settings
from django.db import connections
from django.db.backends.signals import connection_created

from tests.testapp.models import Job

RESULTS = "connguard:results"
ALIASES = ("default", "postgresql")
SERVER_ID = {"mysql": "SELECT CONNECTION_ID()", "postgresql": "SELECT pg_backend_pid()"}
EXPIRE = {
    "mysql": "SET SESSION wait_timeout = 1",
    "postgresql": "SET idle_session_timeout = '300ms'",
}

# Connections this process opened, per alias; counted with Django's signal so
# that the stock backends are counted too.
opened: Counter[str] = Counter()


def _count(sender: Any, connection: Any, **kwargs: Any) -> None:
    opened[connection.alias] += 1


connection_created.connect(_count, dispatch_uid="connguard-tests-count")


def report(data: dict[str, Any]) -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.rpush(RESULTS, json.dumps(data))
    finally:
        client.close()


def server_id(alias: str) -> int:
    wrapper = connections[alias]
    with wrapper.cursor() as cursor:
        cursor.execute(SERVER_ID[wrapper.vendor])
        return int(cursor.fetchone()[0])


def run(key: str, action: str = "") -> None:
    """Write and read a row on each server; ``action="expire"`` also lowers the
    sessions' idle limits, so that the server closes them while the worker idles."""
    data: dict[str, Any] = {"key": key, "pid": os.getpid(), "thread": threading.get_ident()}
    try:
        ids = {}
        for alias in ALIASES:
            row, _ = Job.objects.using(alias).update_or_create(key=key, defaults={"runs": 1})
            Job.objects.using(alias).filter(pk=row.pk).update(runs=2)
            assert Job.objects.using(alias).get(key=key).runs == 2
            ids[alias] = server_id(alias)
            if action == "expire":
                with connections[alias].cursor() as cursor:
                    cursor.execute(EXPIRE[connections[alias].vendor])
        data.update(ok=True, ids=ids)
    except Exception as exc:
        data.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    data["opened"] = dict(opened)
    report(data)
