"""Dramatiq and django_dramatiq: a middleware for job-boundary hygiene.

Put it first in the middleware list, in place of django_dramatiq's
``DbConnectionsMiddleware``::

    DRAMATIQ_BROKER = {
        ...,
        "MIDDLEWARE": [
            "connguard.contrib.dramatiq.ConnguardMiddleware",
            ...,
        ],
    }

Dramatiq runs ``before_*`` hooks in list order and ``after_*`` hooks in reverse
order, so first in the list means: it tidies before any other middleware (say
django_dramatiq's ``AdminMiddleware``) touches the database, and after all of
them when the message is done.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from django.db import connections

from connguard.jobs import job_finished, job_started

__all__ = ["ConnguardMiddleware"]

logger = logging.getLogger("connguard.contrib.dramatiq")


class ConnguardMiddleware(dramatiq.Middleware):
    """Tidy the worker thread's connections around each message."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if broker.middleware and broker.middleware[0] is not self:
            logger.warning(
                "connguard: ConnguardMiddleware is not first in the middleware list, so %r "
                "runs before it and may use a connection before it is tidied",
                broker.middleware[0],
            )

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        job_started()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        job_finished()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        job_finished()

    # Connections are per thread: release each thread's as it stops.

    def before_worker_thread_shutdown(self, broker: dramatiq.Broker, thread: Any) -> None:
        connections.close_all()

    def before_consumer_thread_shutdown(self, broker: dramatiq.Broker, thread: Any) -> None:
        connections.close_all()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        connections.close_all()
