"""Dramatiq through django_dramatiq's rundramatiq, with ConnguardMiddleware first."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker

from testbed.servers import RedisServer
from tests.contrib.workers import GUARDED, Session, Worker, python, survives_everything

Start = Callable[..., Worker]


@pytest.fixture
def enqueue(redis_server: RedisServer) -> Iterator[Callable[[str, str], None]]:
    broker = RedisBroker(url=redis_server.url, middleware=[])
    broker.declare_queue("default")

    def send(key: str, action: str) -> None:
        message = dramatiq.Message(
            queue_name="default",
            actor_name="connguard_run",
            args=(key, action),
            kwargs={},
            options={},
        )
        broker.enqueue(message)

    yield send
    broker.close()


def test_connguard_survives_and_reuses(start_worker: Start, enqueue: Any, session_for: Any) -> None:
    worker = start_worker(
        python("-m", "django", "rundramatiq", "--processes", "1", "--threads", "1"),
        engine=GUARDED,
        setup="connguard",
    )
    session: Session = session_for(worker, enqueue)
    survives_everything(session)
    # django_dramatiq's AdminMiddleware wrote its rows through the same
    # connections, after connguard's middleware had tidied them.
    assert "not first in the middleware list" not in worker.log.read_text()
