"""django-q2: job hygiene in the worker, and an ORM broker that is safe to poll.

Importing this module connects connguard to django-q2's worker signals. The
one line, for the ORM broker, names its broker class (which imports it)::

    Q_CLUSTER = {..., "orm": "default", "broker_class": "connguard.contrib.django_q2.ORM"}

With another broker, import this module in your ``AppConfig.ready()``. Like
django-q2's own modules, it needs Django set up before it is imported.

django-q2's ORM broker calls ``close_old_connections()`` on every broker access
outside a transaction: with ``CONN_MAX_AGE = 0`` the pusher reconnects at every
poll, and the check opens a connection just to look at autocommit. connguard's
broker tidies the broker's alias instead, without closing a healthy connection,
and its pusher rides out a database restart instead of dying with it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import OperationalError
from django.db.models import QuerySet
from django_q.brokers.orm import ORM as DjangoQORM  # type: ignore[import-untyped]
from django_q.conf import Conf  # type: ignore[import-untyped]
from django_q.models import OrmQ  # type: ignore[import-untyped]
from django_q.signals import (  # type: ignore[import-untyped]
    post_execute_in_worker,
    pre_execute,
)

from connguard.jobs import job_finished, job_started, tidy_connections

__all__ = ["ORM"]

logger = logging.getLogger("connguard.contrib.django_q2")


class ORM(DjangoQORM):  # type: ignore[misc]
    """django-q2's ORM broker, tidying its alias without reconnecting per poll."""

    @staticmethod
    def get_connection(list_key: str | None = None) -> QuerySet[Any]:
        tidy_connections(using=Conf.ORM, job_boundary=False)
        return OrmQ.objects.using(Conf.ORM)  # type: ignore[no-any-return]

    def dequeue(self) -> list[tuple[Any, str]] | None:
        try:
            return super().dequeue()  # type: ignore[no-any-return]
        except OperationalError as exc:
            # The database is unreachable for a moment (a restart, a
            # failover). The pusher would log, sleep 10 s and die, to be
            # respawned; poll again instead, as after an empty poll.
            logger.warning(
                "connguard: django-q2's ORM broker could not reach %r: %s",
                Conf.ORM,
                exc,
                extra={"alias": Conf.ORM},
            )
            time.sleep(Conf.POLL)
            return None


# Sync tasks run inside their caller (async_task(..., sync=True)), whose
# connections are not ours to tidy.
def _started(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
    if not task.get("sync"):
        job_started()


def _finished(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
    if not task.get("sync"):
        job_finished()


pre_execute.connect(_started, dispatch_uid="connguard.contrib.django_q2")
post_execute_in_worker.connect(_finished, dispatch_uid="connguard.contrib.django_q2")
