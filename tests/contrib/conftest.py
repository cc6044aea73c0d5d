from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import coverage
import pytest
import redis

from testbed.servers import RedisServer
from tests.contrib.workers import ROOT, Session, Worker, python, worker_env


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def coverage_rc(tmp_path_factory: pytest.TempPathFactory) -> str | None:
    """When the tests run under coverage, the workers are measured too.

    The file is started in every Python subprocess by coverage's .pth hook;
    ``patch = _exit, fork`` keeps the data of forked pool processes and RQ's
    work horses, which leave with os._exit().
    """
    if coverage.Coverage.current() is None:
        return None
    path = tmp_path_factory.mktemp("coverage") / "workers.rc"
    path.write_text(
        "[run]\n"
        "branch = True\n"
        "parallel = True\n"
        "source = connguard\n"
        f"data_file = {ROOT / '.coverage'}\n"
        "patch = _exit, fork\n"
        "sigterm = True\n"
    )
    return str(path)


@pytest.fixture(scope="session")
def worker_tables(
    servers: dict[str, Any],
    redis_server: RedisServer,
    django_db_setup: None,
    coverage_rc: str | None,
) -> None:
    """The queues' own tables (django_q, django_dramatiq), made by the worker project."""
    env = worker_env(
        servers, redis_server, engine="guarded", setup="connguard", coverage_rc=coverage_rc
    )
    subprocess.run(
        python("-m", "django", "migrate", "--run-syncdb", "-v", "0"),
        cwd=ROOT,
        env=env,
        check=True,
    )


@pytest.fixture
def start_worker(
    servers: dict[str, Any],
    redis_server: RedisServer,
    worker_tables: None,
    coverage_rc: str | None,
    tmp_path: Path,
) -> Iterator[Callable[..., Worker]]:
    """Start a worker: ``start_worker(argv, engine=..., setup=..., **env)``."""
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    client.flushdb()
    started: list[Worker] = []

    def start(argv: list[str], *, engine: str, setup: str, **extra: str) -> Worker:
        env = worker_env(
            servers, redis_server, engine=engine, setup=setup, coverage_rc=coverage_rc, **extra
        )
        worker = Worker(argv, env, tmp_path / f"worker{len(started)}.log")
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
        client.close()


@pytest.fixture
def session_for(
    servers: dict[str, Any], redis_server: RedisServer
) -> Iterator[Callable[[Worker, Callable[[str, str], None]], Session]]:
    made: list[Session] = []

    def make(worker: Worker, enqueue: Callable[[str, str], None]) -> Session:
        made.append(Session(worker, enqueue, servers, redis_server))
        return made[-1]

    yield make
    # Each session's Redis client: left to the garbage collector, its socket
    # would be reported (a ResourceWarning, an error here) wherever a GC pass
    # happened to run, even at the end of the whole run.
    for session in made:
        session.redis.close()
