from __future__ import annotations

from django.db import models

from testbed.project.models import WorkerRow


class Event(WorkerRow):
    job = models.IntegerField()

    class Meta:
        app_label = "demo"

    def __str__(self) -> str:
        return f"job {self.job} by {self.worker}"
