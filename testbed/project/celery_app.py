"""The Celery app of the worker projects, on the throwaway Redis."""

from __future__ import annotations

from celery import Celery

from testbed.project.settings import redis_url

# connguard's one-line integration (docs/integrations/celery.md).
FIXUP = "connguard.contrib.celery:fixup"


def celery_app(name: str, *, queue: str, redis: str, guarded: bool = True) -> Celery:
    """An app whose workers take one task at a time from ``queue`` on the Redis
    at ``redis`` (host:port), with connguard's fixup, or with Celery's own
    Django fixup when not ``guarded``; the project's LOGGING stays in charge."""
    app = Celery(name, broker=redis_url(redis), fixups=[FIXUP] if guarded else None)
    app.conf.update(
        task_default_queue=queue,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app
