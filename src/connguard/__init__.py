"""Keep Django's database connections healthy in long-running processes.

Importing this package touches neither Django's settings nor any database
driver: the guarded backends live in ``connguard.db.backends.<vendor>`` and are
loaded by Django from ``DATABASES[alias]["ENGINE"]``.
"""

from __future__ import annotations

from connguard._stats import reset_stats, stats

__all__ = ["reset_stats", "stats"]
