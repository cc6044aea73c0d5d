"""The soak's Celery app, with connguard's one-line fixup (docs/integrations/celery.md)."""

from __future__ import annotations

import os
from typing import Any

from testbed.project.celery_app import celery_app

app = celery_app("connguard_soak", queue="soak", redis=os.environ["SOAK_REDIS"])


@app.task(name="soak.run")
def run(job: dict[str, Any], worker: str) -> None:
    from soak.project import work  # models load after django.setup()

    work.execute(job, worker)
