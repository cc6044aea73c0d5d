"""RQ through django-rq's rqworker, with connguard's worker classes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import rq

from testbed.servers import RedisServer
from tests.contrib.workers import (
    GUARDED,
    STOCK,
    Session,
    Worker,
    python,
    stays_broken,
    survives_everything,
)

Start = Callable[..., Worker]


def rqworker(worker_class: str) -> list[str]:
    return python("-m", "django", "rqworker", "--worker-class", worker_class, "default")


@pytest.fixture
def enqueue(redis_server: RedisServer) -> Iterator[Callable[[str, str], None]]:
    connection = redis.Redis(host=redis_server.host, port=redis_server.port)
    queue = rq.Queue("default", connection=connection)

    def send(key: str, action: str) -> None:
        queue.enqueue("tests.workerproject.work.run", key, action)

    yield send
    connection.close()


def test_connguard_simple_worker_survives_and_reuses(
    start_worker: Start, enqueue: Any, session_for: Any
) -> None:
    worker = start_worker(
        rqworker("connguard.contrib.rq.SimpleWorker"), engine=GUARDED, setup="connguard"
    )
    survives_everything(session_for(worker, enqueue))


def test_connguard_forking_worker_survives_and_never_shares(
    start_worker: Start, enqueue: Any, session_for: Any
) -> None:
    worker = start_worker(
        rqworker("tests.workerproject.rq_workers.ParentConnectsWorker"),
        engine=GUARDED,
        setup="connguard",
    )
    session: Session = session_for(worker, enqueue)
    survives_everything(session, same_process=False)
    # A fresh work horse per job, and none of them used its parent's
    # connection, although the parent used one right before each fork.
    assert len({r["pid"] for r in session.reports}) == len(session.reports)
    assert len(session.parent_reports) == len(session.reports)
    for parent, horse in zip(session.parent_reports, session.reports, strict=True):
        assert set(parent["ids"].values()).isdisjoint(horse["ids"].values()), (parent, horse)


def test_stock_forking_worker_hands_its_connection_to_the_horse(
    start_worker: Start, enqueue: Any, session_for: Any
) -> None:
    """The hazard the connguard worker removes: two processes on one session."""
    worker = start_worker(
        rqworker("tests.workerproject.rq_workers.StockParentConnectsWorker"),
        engine=STOCK,
        setup="stock",
    )
    session: Session = session_for(worker, enqueue)
    horse = session.job()
    (parent,) = session.parent_reports
    assert horse["ok"], horse
    assert horse["pid"] != parent["parent"]
    assert horse["ids"] == parent["ids"]


@pytest.mark.parametrize("how", ["idle", "kill", "restart"])
def test_stock_simple_worker_stays_broken(
    how: str, start_worker: Start, enqueue: Any, session_for: Any
) -> None:
    worker = start_worker(rqworker("rq.SimpleWorker"), engine=STOCK, setup="stock")
    stays_broken(session_for(worker, enqueue), how)
