"""Celery: connguard's job hygiene in place of the Django fixup's close-all.

Celery's Django fixup closes every connection before and after every task, so
each task reconnects (and ``CONN_MAX_AGE`` is ignored). This fixup keeps the
rest of it (``django.setup()``, checks, ``DjangoTask``, closing inherited
connections in prefork children, closing caches) and tidies at task boundaries
instead, so healthy connections are reused. Enable it where the app is made::

    app = Celery("proj", fixups=["connguard.contrib.celery:fixup"])
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from celery.fixups.django import (  # type: ignore[import-untyped]
    DjangoFixup,
    DjangoWorkerFixup,
)

from connguard.jobs import job_finished, job_started

if TYPE_CHECKING:
    from celery import Celery  # type: ignore[import-untyped]

__all__ = ["ConnguardDjangoFixup", "ConnguardWorkerFixup", "fixup"]


def fixup(app: Celery, env: str = "DJANGO_SETTINGS_MODULE") -> ConnguardDjangoFixup | None:
    """Install connguard's Django fixup, when Celery would install its own."""
    if not os.environ.get(env) or "django" in app.loader_cls.lower():
        return None
    installed = ConnguardDjangoFixup(app)
    installed.install()
    return installed


class ConnguardWorkerFixup(DjangoWorkerFixup):  # type: ignore[misc]
    """Celery's worker fixup, with job hygiene around tasks instead of close-all.

    The task signals fire in the thread that runs the task, so this works the
    same for the prefork, threads and solo pools. Eager tasks run inside their
    caller, whose connections are not ours to tidy, as in Celery's fixup.
    """

    def on_task_prerun(self, sender: Any, **kwargs: Any) -> None:
        if not getattr(sender.request, "is_eager", False):
            job_started()

    def on_task_postrun(self, sender: Any, **kwargs: Any) -> None:
        if not getattr(sender.request, "is_eager", False):
            job_finished()
            self.close_cache()


class ConnguardDjangoFixup(DjangoFixup):  # type: ignore[misc]
    """Celery's Django fixup, whose worker part is ``ConnguardWorkerFixup``."""

    _worker_fixup: ConnguardWorkerFixup | None

    @property
    def worker_fixup(self) -> ConnguardWorkerFixup:
        if self._worker_fixup is None:
            self._worker_fixup = ConnguardWorkerFixup(self.app)
        return self._worker_fixup

    @worker_fixup.setter
    def worker_fixup(self, value: ConnguardWorkerFixup) -> None:
        self._worker_fixup = value
