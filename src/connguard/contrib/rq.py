"""RQ and django-rq: workers that run each job inside ``connguard.job()``.

Name one of these classes where you name the worker class::

    python manage.py rqworker --worker-class connguard.contrib.rq.Worker
    RQ = {"WORKER_CLASS": "connguard.contrib.rq.Worker"}   # django-rq settings
    rq worker --worker-class connguard.contrib.rq.SimpleWorker

``Worker`` forks a work horse per job. A forked child shares its parent's
sockets, so a connection the parent opened after start-up (a callback, a
registry clean-up, your own code) would be used by two processes at once and
its protocol stream corrupted. So the parent closes its connections before
every fork, and the horse closes its own before it exits (``os._exit``
would otherwise abort them, and the server logs every one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import rq
from django.db import connections

from connguard.jobs import JobScope

if TYPE_CHECKING:
    from rq.job import Job
    from rq.queue import Queue

__all__ = ["SimpleWorker", "Worker"]


class Worker(rq.Worker):
    """RQ's forking worker: job hygiene in the horse, no connection crosses a fork."""

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        connections.close_all()
        super().fork_work_horse(job, queue)

    # rq 3 passes an Execution after the queue, rq 2 does not: pass through whatever comes.
    def perform_job(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> bool:
        try:
            with JobScope():
                return super().perform_job(job, queue, *args, **kwargs)
        finally:
            if self.is_horse:
                connections.close_all()


class SimpleWorker(rq.SimpleWorker):
    """RQ's non-forking worker: job hygiene around each job, connections reused."""

    def perform_job(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> bool:
        with JobScope():
            return super().perform_job(job, queue, *args, **kwargs)
