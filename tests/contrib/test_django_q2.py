"""django-q2's qcluster with connguard's ORM broker, on the real MariaDB."""

from __future__ import annotations

import json
import subprocess
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from tests.contrib.workers import GUARDED, ROOT, Worker, python, survives_everything, worker_env

Start = Callable[..., Worker]

pytestmark = pytest.mark.django_db(transaction=True, databases=["default"])


@pytest.fixture
def enqueue() -> Callable[[str, str], None]:
    """What django_q.tasks.async_task() does, without installing django_q here:
    a signed task package in the ORM broker's table."""
    with warnings.catch_warnings():
        # django_q's settings are the worker's, not this process's: its
        # defaults here warn about a retry/timeout combination we never use.
        warnings.simplefilter("ignore", UserWarning)
        from django_q.signing import SignedPackage

    def send(key: str, action: str) -> None:
        task = {
            "id": uuid.uuid4().hex,
            "name": f"connguard-{key}",
            "func": "tests.workerproject.work.run",
            "args": (key, action),
            "kwargs": {},
            "started": timezone.now(),
        }
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "INSERT INTO django_q_ormq (`key`, payload, `lock`) VALUES (%s, %s, %s)",
                ["default", SignedPackage.dumps(task), timezone.now()],
            )

    return send


def test_connguard_survives_and_reuses(start_worker: Start, enqueue: Any, session_for: Any) -> None:
    worker = start_worker(python("-m", "django", "qcluster"), engine=GUARDED, setup="connguard")
    survives_everything(session_for(worker, enqueue))
    # The pusher polled through the server restart instead of dying with it.
    assert "reincarnated pusher" not in worker.log.read_text()


def test_orm_broker_polls_without_reconnecting(
    servers: Any, redis_server: Any, worker_tables: None, coverage_rc: str | None
) -> None:
    """With CONN_MAX_AGE = 0, the stock broker reconnects at every poll."""
    env = worker_env(
        servers, redis_server, engine=GUARDED, setup="connguard", coverage_rc=coverage_rc
    )
    databases = json.loads(env["CONNGUARD_WORKER_DATABASES"])
    databases["default"]["CONN_MAX_AGE"] = 0
    env["CONNGUARD_WORKER_DATABASES"] = json.dumps(databases)
    result = subprocess.run(
        python("-m", "tests.workerproject.q2_polls"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    counts = json.loads(result.stdout)
    assert counts["stock"] >= 5  # at least one per poll
    assert counts["connguard"] == 1
