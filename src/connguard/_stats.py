"""Per-process counters of what the guard did, per alias.

Counters change only on events (a validation, a replacement, a lost
connection), never on the per-use fast path, so the lock below costs nothing
while connections are healthy.
"""

from __future__ import annotations

import threading
from collections import Counter

# The counters' names: connguard._events.Stat.
_lock = threading.Lock()
_counters: dict[str, Counter[str]] = {}


def record(alias: str, *keys: str) -> None:
    with _lock:
        counter = _counters.get(alias)
        if counter is None:
            # Not setdefault(alias, Counter()): that builds a Counter on every call.
            counter = _counters[alias] = Counter()
        for key in keys:
            counter[key] += 1


def stats(alias: str = "default") -> dict[str, int]:
    """Return a copy of the counters of ``alias`` in this process."""
    with _lock:
        return dict(_counters.get(alias, {}))


def reset_stats(alias: str | None = None) -> None:
    """Reset the counters of ``alias``, or of every alias."""
    with _lock:
        if alias is None:
            _counters.clear()
        else:
            _counters.pop(alias, None)
