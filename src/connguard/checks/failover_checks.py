"""W007: a failover wait that a task queue's time limit would cut short.

A connect that waits for a failover to end (``failover_timeout``) runs inside
the job that needs it; a task time limit shorter than the wait kills the job
in the middle of it, with the queue's own error instead of connguard's, and
Celery's hard limit kills the worker process itself. The limits that settings
show: Celery's (``CELERY_TASK_SOFT_TIME_LIMIT``, ``CELERY_TASK_TIME_LIMIT``, with
the usual ``namespace="CELERY"``) and django-q2's ``Q_CLUSTER["timeout"]``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from connguard.checks.aliases import AliasInfo
from connguard.checks.hints import hint, key


def task_time_limits() -> dict[str, float]:
    """The task queues' time limits that the project's settings declare, by setting."""
    found: dict[str, float] = {}
    for name in ("CELERY_TASK_SOFT_TIME_LIMIT", "CELERY_TASK_TIME_LIMIT"):
        _add(found, name, getattr(settings, name, None))
    q_cluster: Any = getattr(settings, "Q_CLUSTER", None)
    if isinstance(q_cluster, dict):
        _add(found, "Q_CLUSTER['timeout']", q_cluster.get("timeout"))
    return found


def _add(found: dict[str, float], name: str, value: object) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        found[name] = float(value)


def failover_messages(info: AliasInfo) -> list[checks.CheckMessage]:
    if not info.active or info.options is None or info.options.role != "primary":
        return []
    wait = info.options.failover_timeout
    limits = task_time_limits()
    if not wait or not limits:
        return []
    name, limit = min(limits.items(), key=lambda item: item[1])
    if wait < limit:
        return []
    setting = key(info.alias, "OPTIONS", "connguard", "failover_timeout")
    return [
        checks.Warning(
            f"{setting} is {wait:g}s, but {name} is {limit:g}s: a job that waits for a "
            "failover to end is killed by its time limit first.",
            hint=hint(
                f"Set failover_timeout below {limit:g}s, or raise the time limit.",
                "connguard.W007",
            ),
            id="connguard.W007",
        )
    ]
