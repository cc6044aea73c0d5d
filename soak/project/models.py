from __future__ import annotations

from django.db import models

from testbed.project.models import WorkerRow


class Row(WorkerRow):
    """One row per applied write. ``jkey`` is deliberately not unique: a
    unique constraint would turn a duplicate into an error and hide it."""

    jkey = models.CharField(max_length=64)

    class Meta:
        app_label = "project"
        db_table = "soak_row"
        managed = False  # created by soak/topology.py, before any worker starts

    def __str__(self) -> str:
        return self.jkey
