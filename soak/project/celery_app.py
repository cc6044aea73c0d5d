"""The soak's Celery app, with connguard's one-line fixup (docs/integrations/celery.md)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

app = Celery(
    "connguard_soak",
    broker=f"redis://{os.environ['SOAK_REDIS']}/0",
    fixups=["connguard.contrib.celery:fixup"],
)
app.conf.update(
    task_default_queue="soak",
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="soak.run")
def run(job: dict[str, Any], worker: str) -> None:
    from soak.project import work  # models load after django.setup()

    work.execute(job, worker)
