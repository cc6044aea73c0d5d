"""The Celery app of the worker tests: connguard's fixup, or Celery's own."""

from __future__ import annotations

import os
from typing import Any

from celery import signals

from testbed.project.celery_app import celery_app

SETUP = os.environ.get("CONNGUARD_WORKER_SETUP", "connguard")

app = celery_app(
    "connguard_tests",
    queue="connguard",
    redis=os.environ["CONNGUARD_WORKER_REDIS"],
    guarded=SETUP == "connguard",
)
if os.environ.get("CONNGUARD_WORKER_DB_REUSE_MAX"):
    # Celery's documented way to keep connections across tasks: close every
    # N tasks instead of every task.
    app.conf.CELERY_DB_REUSE_MAX = int(os.environ["CONNGUARD_WORKER_DB_REUSE_MAX"])


@app.task(name="connguard.run")
def run(key: str, action: str = "") -> None:
    from tests.workerproject import work  # models load after django.setup()

    work.run(key, action)


@signals.worker_init.connect
def parent_connects(**kwargs: Any) -> None:
    """The worker parent opens a connection before the pool forks (the fixup
    has closed its connections by now): prefork children must not use it."""
    if os.environ.get("CONNGUARD_WORKER_PARENT_CONNECTS"):
        from tests.workerproject import work

        work.report({"parent": os.getpid(), "ids": {a: work.server_id(a) for a in work.ALIASES}})
