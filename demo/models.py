from __future__ import annotations

from django.db import models


class Event(models.Model):
    job = models.IntegerField()
    worker = models.CharField(max_length=20)

    class Meta:
        app_label = "demo"

    def __str__(self) -> str:
        return f"job {self.job} by {self.worker}"
