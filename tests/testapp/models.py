from __future__ import annotations

from django.db import models


class Job(models.Model):
    key = models.CharField(max_length=64, unique=True)
    runs = models.IntegerField(default=0)

    class Meta:
        app_label = "testapp"

    def __str__(self) -> str:
        return self.key


class Entry(models.Model):
    """A row per write, with no unique key: a write applied twice shows as two rows."""

    note = models.CharField(max_length=64)

    class Meta:
        app_label = "testapp"

    def __str__(self) -> str:
        return self.note
