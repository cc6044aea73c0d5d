"""Huey and djhuey: job-boundary hygiene around every task.

djhuey's ``db_task`` closes old connections around the tasks it decorates,
but a plain ``@task`` gets nothing, and stays broken after a disconnect. This
installs pre- and post-execute hooks, so every task gets the hygiene. In any
``tasks.py`` (the consumer imports them all), before your own hooks::

    connguard.contrib.huey.install()        # djhuey's HUEY
    connguard.contrib.huey.install(huey)    # or a Huey instance of your own
"""

from __future__ import annotations

from typing import Any

import huey as huey_module  # type: ignore[import-untyped]
from django.db import connections

from connguard.jobs import job_finished, job_started

__all__ = ["install"]

HOOK_NAME = "connguard"


def install(huey: huey_module.Huey | None = None) -> None:
    """Add connguard's hooks to ``huey`` (djhuey's ``HUEY`` by default)."""
    if huey is None:
        from huey.contrib.djhuey import HUEY  # type: ignore[import-untyped]

        huey = HUEY
    instance: Any = huey

    # Immediate mode runs tasks inside their caller, whose connections are
    # not ours to tidy (djhuey's db_task skips them too).
    def started(task: Any) -> None:
        if not instance.immediate:
            job_started()

    def finished(task: Any, value: Any, exc: BaseException | None) -> None:
        if not instance.immediate:
            job_finished()

    instance.pre_execute(name=HOOK_NAME)(started)
    instance.post_execute(name=HOOK_NAME)(finished)
    # Runs in each worker as it stops: release that worker's connections.
    instance.on_shutdown(name=HOOK_NAME)(connections.close_all)
