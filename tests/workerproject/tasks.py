"""Tasks that django_dramatiq's and djhuey's consumers discover by module name."""

from __future__ import annotations

import dramatiq
from django.conf import settings
from huey.contrib.djhuey import task

import connguard.contrib.huey
from tests.workerproject import work

if settings.WORKER_GUARDED:
    connguard.contrib.huey.install()


@dramatiq.actor(actor_name="connguard_run", max_retries=0)
def dramatiq_run(key: str, action: str = "") -> None:
    work.run(key, action)


@task(name="huey_run")
def huey_run(key: str, action: str = "") -> None:
    work.run(key, action)
