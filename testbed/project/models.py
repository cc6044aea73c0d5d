"""The row a worker writes for each job: the soak's ``Row``, the demo's ``Event``."""

from __future__ import annotations

from django.db import models


class WorkerRow(models.Model):
    """A row a worker wrote, named by the worker; each project adds the job's
    key. Nothing is unique, so that a write applied twice shows as two rows."""

    worker = models.CharField(max_length=64)

    class Meta:
        abstract = True
