"""The soak's worker processes, one per kind, and how the producer hands each a job.

plain    a hand-written loop, one job at a time (soak/project/loop.py)
threads  the same loop feeding connguard.ThreadPoolExecutor, four threads
celery   a real Celery worker, prefork pool of two, connguard's fixup
rq       a real RQ worker (django-rq's rqworker), connguard.contrib.rq.Worker:
         a forked work horse per job
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from soak.project.queues import STOP, queue_name

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("plain", "threads", "celery", "rq")
# How many jobs the producer keeps queued or running per worker: enough to
# keep every process of the worker busy, few enough that a stuck worker shows.
IN_FLIGHT = {"plain": 2, "threads": 8, "celery": 4, "rq": 2}


def _argv(kind: str, name: str) -> list[str]:
    if kind in ("plain", "threads"):
        return ["-m", "soak.project.loop", kind, name]
    if kind == "celery":
        return ["-m", "celery", "-A", "soak.project.celery_app", "worker", "--pool=prefork",
                "--concurrency=2", "-Q", "soak", "-n", f"{name}@soak", "--without-gossip",
                "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"]  # fmt: skip
    return ["-m", "django", "rqworker", "--worker-class", "connguard.contrib.rq.Worker", "soak"]


class WorkerProcess:
    """One worker, in its own process group, so that stopping it stops its
    pool processes and work horses too; the kernel kills it if the soak dies."""

    def __init__(self, kind: str, env: dict[str, str], log_dir: Path, client: redis.Redis) -> None:
        self.kind = kind
        self.name = kind  # one worker per kind
        self.limit = IN_FLIGHT[kind]
        self.client = client
        self.log = log_dir / f"{kind}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                ["setpriv", "--pdeathsig=KILL", sys.executable, *_argv(kind, self.name)],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._celery: Any = None

    def enqueue(self, job: dict[str, Any]) -> None:
        if self.kind in ("plain", "threads"):
            self.client.rpush(queue_name(self.name), json.dumps(job))
        elif self.kind == "celery":
            self._celery_client().send_task("soak.run", args=[job, self.name], queue="soak")
        else:
            self._rq_queue().enqueue(
                "soak.project.rq_jobs.run", job, self.name, job_timeout=120, result_ttl=0
            )

    def _celery_client(self) -> Any:
        if self._celery is None:
            from celery import Celery

            kwargs = self.client.connection_pool.connection_kwargs
            self._celery = Celery(broker=f"redis://{kwargs['host']}:{kwargs['port']}/0")
        return self._celery

    def _rq_queue(self) -> Any:
        import rq

        return rq.Queue("soak", connection=self.client)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            if self.kind in ("plain", "threads"):
                self.client.rpush(queue_name(self.name), STOP)
            else:
                self.process.send_signal(signal.SIGTERM)  # a warm shutdown
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def worker_env(databases: dict[str, Any], redis_address: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "soak.project.settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SOAK_DATABASES": json.dumps(databases),
        "SOAK_REDIS": redis_address,
    }
