"""Mark operations that are safe to repeat.

Outside a transaction, connguard retries a statement that failed because the
connection died only when running it twice cannot hurt: it never reached the
server, or it is read-only. Code that knows better (an upsert, an
``INSERT ... ON CONFLICT DO NOTHING``, a write keyed by a unique id) says so::

    with connguard.idempotent():
        Event.objects.update_or_create(key=key, defaults=...)

    @connguard.idempotent()
    def record_heartbeat(): ...

The mark applies to every statement run in the block, in this thread or
asyncio task, and never inside a transaction: nothing is retried there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

_idempotent: ContextVar[bool] = ContextVar("connguard_idempotent", default=False)


@contextlib.contextmanager
def idempotent() -> Iterator[None]:
    """Context manager and decorator: statements in it may be retried once."""
    token = _idempotent.set(True)
    try:
        yield
    finally:
        _idempotent.reset(token)


def is_marked_idempotent() -> bool:
    return _idempotent.get()
