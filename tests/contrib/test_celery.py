"""Celery with connguard's fixup, on real prefork, threads and solo workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery

from testbed.servers import RedisServer
from tests.contrib.workers import (
    GUARDED,
    STOCK,
    Session,
    Worker,
    new_connections,
    python,
    stays_broken,
    survives_everything,
)

Start = Callable[..., Worker]


def celery_worker(pool: str) -> list[str]:
    return python(
        *("-m", "celery", "-A", "tests.workerproject.celery_app", "worker"),
        *("--pool", pool, "--concurrency", "1", "--queues", "connguard", "--loglevel", "info"),
        *("--without-heartbeat", "--without-gossip", "--without-mingle"),
    )


@pytest.fixture
def enqueue(redis_server: RedisServer) -> Iterator[Callable[[str, str], None]]:
    client = Celery("connguard_tests_client", broker=redis_server.url, fixups=[])

    def send(key: str, action: str) -> None:
        client.send_task("connguard.run", args=[key, action], queue="connguard")

    yield send
    client.close()


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_connguard_survives_and_reuses(
    pool: str, start_worker: Start, enqueue: Any, session_for: Any
) -> None:
    worker = start_worker(
        celery_worker(pool),
        engine=GUARDED,
        setup="connguard",
        CONNGUARD_WORKER_PARENT_CONNECTS="1" if pool == "prefork" else "",
    )
    session: Session = session_for(worker, enqueue)
    survives_everything(session)
    if pool == "prefork":
        # The parent's connection, opened before the fork, was dropped in the
        # child without a word to the server: the parent's session lives on.
        (parent,) = session.parent_reports
        first_child_ids = set(session.reports[0]["ids"].values())
        assert first_child_ids.isdisjoint(parent["ids"].values())
        assert session.reports[0]["pid"] != parent["parent"]


def test_stock_opens_a_connection_per_task(
    start_worker: Start, enqueue: Any, session_for: Any
) -> None:
    worker = start_worker(celery_worker("solo"), engine=STOCK, setup="stock")
    session: Session = session_for(worker, enqueue)
    for _ in range(4):
        assert session.job()["ok"]
    assert new_connections(session.reports) == {"default": [1, 1, 1], "postgresql": [1, 1, 1]}


@pytest.mark.parametrize("how", ["idle", "kill", "restart"])
def test_stock_with_connection_reuse_stays_broken(
    how: str, start_worker: Start, enqueue: Any, session_for: Any
) -> None:
    worker = start_worker(
        celery_worker("solo"), engine=STOCK, setup="stock", CONNGUARD_WORKER_DB_REUSE_MAX="100"
    )
    stays_broken(session_for(worker, enqueue), how)
