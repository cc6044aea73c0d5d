"""Django's PostgreSQL pool (``OPTIONS["pool"]``): never lend a dead connection.

The pool checks nothing on checkout unless ``CONN_HEALTH_CHECKS`` (or, from
Django 6.1, a ``check`` of the user's) asks it to ping every checkout. A
connection that died while it sat in the pool (the server's idle limit, a
``pg_terminate_backend()``, a restart) would reach the first statement, or a
``connection_created`` receiver that runs SQL.

So the guarded wrapper's ``get_new_connection()`` validates each checkout the
way any other use is validated, before Django's ``connect()`` does anything
with it: a dead one is closed and handed back (the pool discards a closed
connection and opens a replacement), and the next one is drawn, until one is
alive. A user's pool ``check`` still runs, inside the pool's own ``getconn()``,
before this.

A pooled connection outlives every wrapper's hold on it, so what the guard
knows about it (when it was last used, the server's idle limit) is kept here
between checkouts. The first checkout of a connection in this process reads
the server's idle limit, a round trip that proves the connection alive too;
later checkouts cost what any other use costs: a clock read and one ``poll()``.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

from connguard._events import Reason
from connguard.db.backends.base.decisions import verdict
from connguard.db.backends.base.state import Action

# What the guard knows of a live pooled connection: when it was last used, the
# server's idle limit, and the poll object on its socket (made once per
# connection: asking psycopg for the socket is a C call through ctypes).
Known = tuple[float, float | None, Any]
_known: weakref.WeakKeyDictionary[Any, Known] = weakref.WeakKeyDictionary()


def remember(raw: Any, known: Known) -> None:
    """Called when a live connection goes back to the pool."""
    _known[raw] = known


def checkout(wrapper: Any, draw: Callable[[], Any]) -> tuple[Any, Known]:
    """Draw connections until one is alive.

    Return it, with what the guard knows of it (``Known``). Each dead
    one is discarded, so this ends: at the latest with a connection the pool
    has just opened. If the pool keeps lending dead connections (the server is
    killing them as fast as they open), the last error is raised, which the
    caller classifies like any other connect error.
    """
    # Every connection the pool holds may be dead, and a few may die while
    # we draw: allow for all of them, twice over, before giving up.
    attempts = 2 * int(wrapper.pool.max_size) + 2
    last_error: BaseException | None = None
    for _ in range(attempts):
        raw = draw()
        try:
            state, error = _inspect(wrapper, raw)
        except BaseException:
            # Interrupted half-way: the protocol state is unknown.
            _discard(wrapper, raw)
            raise
        if state is not None:
            return raw, state
        last_error = error
        _discard(wrapper, raw)
    raise wrapper.Database.OperationalError(
        f"connguard: the pool of {wrapper.alias!r} lent {attempts} dead connections in a row"
    ) from last_error


def _inspect(wrapper: Any, raw: Any) -> tuple[Known | None, BaseException | None]:
    """(what is known, None) for a live connection; (None, the error, if any) for a dead one."""
    now = time.monotonic()
    known = _known.get(raw)
    if known is None:
        # Never lent in this process: learn what the guard needs to know. The
        # idle-limit query (or, with a declared limit, a ping) is a round trip,
        # so it also proves the connection alive.
        try:
            limit, _ = wrapper._connguard_learn(raw, ping=True)
        except wrapper.Database.Error as exc:
            wrapper._connguard_checkout_failed(Reason.VALIDATION_FAILED, exc)
            return None, exc
        return (now, limit, wrapper._connguard_make_poll(raw)), None
    last_used, limit, poller = known
    state = wrapper._connguard
    state.idle = idle = now - last_used
    events = poller.poll(0) if poller is not None else None
    # A pooled connection has no CONN_MAX_AGE deadline of its own: the pool's max_lifetime.
    action, reason = verdict(
        now, idle, None, limit, events, wrapper.connguard_options.validate_after
    )
    if action is Action.USE:
        return known, None
    reason = wrapper._connguard_settle(action, reason, raw, False)
    if reason is not None:
        del _known[raw]
        wrapper._connguard_checkout_failed(reason, None)
        return None, None
    # A ping (after idle, or on readable data) counts as a use.
    return (now, limit, poller), None


def _discard(wrapper: Any, raw: Any) -> None:
    # Closed first, so that the pool discards it instead of lending it again.
    try:
        raw.close()
    except Exception:
        pass
    try:
        wrapper.pool.putconn(raw)
    except Exception:
        pass
