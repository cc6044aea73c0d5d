"""The table every benchmark job reads and writes.

Unmanaged: ``benchmarks.run`` creates ``bench_item`` with plain SQL before any
worker starts, so no worker pays for migrations.
"""

from __future__ import annotations

from django.db import models


class BenchItem(models.Model):
    counter = models.IntegerField()
    payload = models.CharField(max_length=64)

    class Meta:
        app_label = "benchmarks"
        db_table = "bench_item"
        managed = False

    def __str__(self) -> str:
        return f"bench item {self.pk}"
