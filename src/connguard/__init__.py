"""Keep Django's database connections healthy in long-running processes.

Importing this package touches neither Django's settings nor any database
driver: the guarded backends live in ``connguard.db.backends.<vendor>`` and are
loaded by Django from ``DATABASES[alias]["ENGINE"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connguard._stats import reset_stats, stats
from connguard.retry import idempotent

if TYPE_CHECKING:
    from connguard.jobs import ThreadPoolExecutor, as_jobs, job

__all__ = ["ThreadPoolExecutor", "as_jobs", "idempotent", "job", "reset_stats", "stats"]

# The job API imports django.db; load it on first use so that importing
# connguard stays cheap.
_LAZY = {"ThreadPoolExecutor", "as_jobs", "job"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from connguard import jobs

        value = getattr(jobs, name)
        # Kept, so that later lookups (connguard.job() around every job) are
        # plain module attributes and never come back here.
        globals()[name] = value
        return value
    raise AttributeError(f"module 'connguard' has no attribute {name!r}")
