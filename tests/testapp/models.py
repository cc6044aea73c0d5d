from __future__ import annotations

from django.db import models


class Job(models.Model):
    key = models.CharField(max_length=64, unique=True)
    runs = models.IntegerField(default=0)

    class Meta:
        app_label = "testapp"

    def __str__(self) -> str:
        return self.key
