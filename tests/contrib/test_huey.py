"""Huey through djhuey's run_huey: connguard's hooks cover a plain @task."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from huey import RedisHuey

from testbed.servers import RedisServer
from tests.contrib.workers import GUARDED, STOCK, Worker, python, stays_broken, survives_everything

Start = Callable[..., Worker]


@pytest.fixture
def enqueue(redis_server: RedisServer) -> Iterator[Callable[[str, str], None]]:
    huey = RedisHuey("connguard-tests", host=redis_server.host, port=redis_server.port)

    # The worker's task, by name: tests.workerproject.tasks.huey_run.
    def huey_run(key: str, action: str = "") -> None:
        raise AssertionError("runs in the worker")

    huey_run.__module__ = "tests.workerproject.tasks"
    task = huey.task(name="huey_run")(huey_run)

    def send(key: str, action: str) -> None:
        task(key, action)

    yield send
    huey.storage.pool.disconnect()


def run_huey() -> list[str]:
    return python("-m", "django", "run_huey", "--workers", "1", "--worker-type", "thread")


def test_connguard_plain_task_survives_and_reuses(
    start_worker: Start, enqueue: Any, session_for: Any
) -> None:
    worker = start_worker(run_huey(), engine=GUARDED, setup="connguard")
    survives_everything(session_for(worker, enqueue))


@pytest.mark.parametrize("how", ["idle", "kill", "restart"])
def test_stock_plain_task_stays_broken(
    how: str, start_worker: Start, enqueue: Any, session_for: Any
) -> None:
    worker = start_worker(run_huey(), engine=STOCK, setup="stock")
    stays_broken(session_for(worker, enqueue), how)
