"""The six ways a worker can keep its connection, and the job they all run.

Each job is a short unit of work on one row: a ``SELECT`` by primary key and an
``UPDATE`` of the same row, in autocommit, as a queue worker would run them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

VENDORS = {"mysql": "MariaDB", "postgresql": "PostgreSQL"}
ROWS = 1000  # rows in bench_item; each job picks one at random


@dataclass(frozen=True)
class Strategy:
    key: str
    label: str
    engine: str  # ENGINE with {vendor} in place of "mysql" / "postgresql"
    conn_max_age: float | None
    health_checks: bool = False
    # What runs around each job: nothing, close_old_connections() before and
    # after (what Celery, Dramatiq, Huey and django-q2 do), or connguard.job().
    boundary: str = "none"

    def settings(self, vendor: str, server: dict[str, Any]) -> dict[str, Any]:
        """The ``DATABASES`` entry for this strategy against ``server``."""
        return {
            "ENGINE": self.engine.format(vendor=vendor),
            "NAME": server["name"],
            "USER": server["user"],
            "PASSWORD": server["password"],
            "HOST": server["host"],
            "PORT": str(server["port"]),
            "CONN_MAX_AGE": self.conn_max_age,
            "CONN_HEALTH_CHECKS": self.health_checks,
        }


STRATEGIES = [
    Strategy("stock", "stock, persistent, no checks", "django.db.backends.{vendor}", None),
    Strategy(
        "reconnect",
        "stock, reconnect per job",
        "django.db.backends.{vendor}",
        0,
        boundary="close_old_connections",
    ),
    Strategy(
        "health_checks",
        "stock, CONN_HEALTH_CHECKS",
        "django.db.backends.{vendor}",
        None,
        health_checks=True,
        boundary="close_old_connections",
    ),
    Strategy(
        "sqlalchemy_pool",
        "SQLAlchemy pool, pre-ping",
        "dj_db_conn_pool.backends.{vendor}",
        0,
        boundary="close_old_connections",
    ),
    # Django's defaults with only the ENGINE changed: CONN_MAX_AGE = 0, a plain loop.
    Strategy("connguard", "connguard, defaults", "connguard.db.backends.{vendor}", 0),
    Strategy(
        "connguard_job",
        "connguard, in connguard.job()",
        "connguard.db.backends.{vendor}",
        None,
        boundary="job",
    ),
    # The upper bound again, in a process of its own: how far two identical
    # processes land apart on this machine, the noise floor of every ratio.
    Strategy("control", "control: stock again", "django.db.backends.{vendor}", None),
]
BY_KEY = {strategy.key: strategy for strategy in STRATEGIES}
UPPER_BOUND = "stock"


def make_job(strategy: Strategy, alias: str = "default") -> Callable[[int], None]:
    """The job for ``strategy``: one call runs one job on row ``pk``."""
    from django.db import close_old_connections
    from django.db.models import F

    from benchmarks.models import BenchItem

    items = BenchItem.objects.using(alias)

    def work(pk: int) -> None:
        items.get(pk=pk)
        items.filter(pk=pk).update(counter=F("counter") + 1)

    if strategy.boundary == "close_old_connections":

        def tidied(pk: int) -> None:
            close_old_connections()
            try:
                work(pk)
            finally:
                close_old_connections()

        return tidied
    if strategy.boundary == "job":
        import connguard

        def in_job(pk: int) -> None:
            with connguard.job():
                work(pk)

        return in_job
    return work
