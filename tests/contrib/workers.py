"""Real worker processes for the queue tests, and the scenarios they go through.

A test starts a worker with ``start_worker`` (the ``worker`` fixture stops it),
enqueues jobs with the queue's own client, and reads what each job reported
(tests/workerproject/work.py) from Redis. Disruptions happen between jobs, on
the real servers: the worker's sessions expire, are killed, or the servers
restart.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from testbed.servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]
RESULTS = "connguard:results"  # tests/workerproject/work.py pushes here
GUARDED = "guarded"
STOCK = "stock"
ENGINES = {
    GUARDED: {
        "mysql": "connguard.db.backends.mysql",
        "postgresql": "connguard.db.backends.postgresql",
    },
    STOCK: {"mysql": "django.db.backends.mysql", "postgresql": "django.db.backends.postgresql"},
}
ALIASES = {"default": "mysql", "postgresql": "postgresql"}
# Generous: a worker starting under coverage on a busy 2-core machine.
DEADLINE = 90.0

Enqueue = Callable[[str, str], None]


def worker_env(
    servers: dict[str, Any],
    redis_server: RedisServer,
    *,
    engine: str,
    setup: str,
    coverage_rc: str | None,
    **extra: str,
) -> dict[str, str]:
    databases = {
        alias: servers[vendor].settings(ENGINES[engine][vendor], CONN_MAX_AGE=None)
        for alias, vendor in ALIASES.items()
    }
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.workerproject.settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "CONNGUARD_WORKER_DATABASES": json.dumps(databases),
        "CONNGUARD_WORKER_REDIS": f"{redis_server.host}:{redis_server.port}",
        "CONNGUARD_WORKER_SETUP": setup,
        **extra,
    }
    if coverage_rc:
        env["COVERAGE_PROCESS_START"] = coverage_rc
    return env


class Worker:
    """One worker process, in its own process group so that stopping it stops
    its children (pool processes, work horses) too."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv = argv
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                # If the test run is killed before its fixtures can stop the
                # worker, the kernel sends it the warm-shutdown signal, as the
                # test bed's servers get theirs: no worker outlives its run.
                ["setpriv", "--pdeathsig=TERM", *argv],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive():
            # A warm shutdown, which the worker passes on to its children: it
            # lets every process save its coverage data.
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


class Session:
    """Drives one worker through jobs and disruptions, and keeps the reports."""

    def __init__(
        self,
        worker: Worker,
        enqueue: Enqueue,
        servers: dict[str, Any],
        redis_server: RedisServer,
    ) -> None:
        self.worker = worker
        self.enqueue = enqueue
        self.servers = servers
        self.redis = redis.Redis(host=redis_server.host, port=redis_server.port)
        self.reports: list[dict[str, Any]] = []
        self.parent_reports: list[dict[str, Any]] = []

    def job(self, action: str = "") -> dict[str, Any]:
        key = uuid.uuid4().hex
        self.enqueue(key, action)
        report = self._next_report()
        assert report["key"] == key, report
        self.reports.append(report)
        return report

    def _next_report(self) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            item = self.redis.blpop([RESULTS], timeout=1)
            if item is not None:
                report: dict[str, Any] = json.loads(item[1])
                if "parent" in report:
                    self.parent_reports.append(report)
                    continue
                return report
            if not self.worker.alive():
                raise AssertionError(f"the worker exited:\n{self.worker.log_tail()}")
        raise AssertionError(f"no job report within {DEADLINE}s:\n{self.worker.log_tail()}")

    # ##### Disruptions between jobs #####

    def _by_server(self, ids: dict[str, int]) -> list[tuple[Any, int]]:
        return [(self.servers[ALIASES[alias]], ident) for alias, ident in ids.items()]

    def wait_gone(self, ids: dict[str, int]) -> None:
        """Wait until the servers no longer list these sessions."""
        for server, ident in self._by_server(ids):
            server.wait_gone(ident, timeout=DEADLINE)

    def expire(self) -> dict[str, Any]:
        """A job lowers its sessions' idle limits; wait until the servers close them."""
        report = self.job("expire")
        assert report["ok"], report
        self.wait_gone(report["ids"])
        return report

    def kill(self, ids: dict[str, int]) -> None:
        """The servers end these sessions; wait until they are gone."""
        for server, ident in self._by_server(ids):
            server.kill(ident, wait=False)
        self.wait_gone(ids)

    def restart(self) -> None:
        for server in self.servers.values():
            server.restart()

    def disrupt(self, how: str, last: dict[str, Any]) -> None:
        if how == "idle":
            self.expire()
        elif how == "kill":
            self.kill(last["ids"])
        else:
            self.restart()


def new_connections(reports: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Connections each job opened, per alias, from consecutive reports of one process."""
    assert len({r["pid"] for r in reports}) == 1, reports
    return {
        alias: [
            after["opened"][alias] - before["opened"][alias]
            for before, after in itertools.pairwise(reports)
        ]
        for alias in ALIASES
    }


def survives_everything(session: Session, *, same_process: bool = True) -> None:
    """The connguard scenario: one worker, every disruption, every job succeeds."""
    for _ in range(3):
        session.job()
    expired = session.expire()
    after_idle = session.job()
    if same_process:
        session.kill(after_idle["ids"])
    else:
        # A worker whose connections end with each job's process (RQ's work
        # horse closes its own before it exits): nothing is left to kill. Its
        # promise is that the sessions go, so wait for that; a kill here would
        # race the horse's own close.
        session.wait_gone(after_idle["ids"])
    after_kill = session.job()
    session.restart()
    for _ in range(2):
        session.job()
    failed = [r for r in session.reports if not r["ok"]]
    assert not failed, failed
    for before, after in ((expired, after_idle), (after_idle, after_kill)):
        assert set(before["ids"].values()).isdisjoint(after["ids"].values())
    if same_process:
        # Healthy connections are reused; each disruption costs one new one.
        # Jobs: plain, plain, expire, after idle, after kill, after restart, plain.
        expected = [0, 0, 0, 1, 1, 1, 0]
        assert new_connections(session.reports) == {"default": expected, "postgresql": expected}
    assert session.worker.alive(), session.worker.log_tail()


def stays_broken(session: Session, how: str) -> None:
    """The stock scenario: after the disruption, the next jobs fail, and the next."""
    first = session.job()
    assert first["ok"], first
    session.disrupt(how, first)
    after = [session.job(), session.job()]
    assert [r["ok"] for r in after] == [False, False], after
    assert session.worker.alive(), session.worker.log_tail()
