"""Every decision the guard makes, as plain functions over one ``GuardState``.

The mixin (``base.py``) calls these from Django's hooks and does what they
say; the drivers (``connguard._drivers``) supply the facts (is this error a
disconnect, did the statement never run); ``connguard._events`` tells what
happened. Nothing here does I/O: every rule of the README's two tables is
unit-tested without a server (tests/test_decisions.py), and against real ones.

Before use, outside a transaction, in the README's order: dead (a disconnect
or an interruption earlier) → replace; past ``CONN_MAX_AGE`` → recycle; idle
past the server's idle limit → recycle, without a ping; the socket hung up →
replace; data waiting on it → ping; idle past ``validate_after`` → ping. Inside
a transaction nothing is replaced: a dead connection is refused.

On a driver error: a disconnect inside ``COMMIT`` is ``CommitOutcomeUnknown``,
inside a transaction ``TransactionLost``, elsewhere ``ConnectionLost``, which
``retry()`` turns into a retry once or ``OutcomeUnknown``.
"""

from __future__ import annotations

import enum
import select
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connguard._events import Reason
from connguard._sql import is_read_only
from connguard.exceptions import (
    CLOSED_IN_TRANSACTION,
    DEAD_BEFORE_COMMIT,
    EXECUTEMANY_REFUSAL,
    GONE_BEFORE_COMMIT,
    LOST_IN_SETUP,
    RETRY_FAILED,
    CommitOutcomeUnknown,
    ConnectionLost,
    OutcomeUnknown,
    TransactionLost,
)
from connguard.retry import is_marked_idempotent

# POLLRDHUP (Linux) reports a FIN from the server even before we read the EOF.
_RDHUP: int = getattr(select, "POLLRDHUP", 0)
POLL_MASK = select.POLLIN | select.POLLPRI | _RDHUP
HANGUP = select.POLLHUP | select.POLLERR | select.POLLNVAL | _RDHUP
_NEVER = float("inf")


@dataclass(slots=True)
class GuardState:
    """What the guard knows about one wrapper's connection: the whole of its state."""

    # A disconnect, an interruption, or a connect() that has not completed: the
    # connection is replaced at its next use outside a transaction, refused inside.
    dead: bool = False
    connecting: bool = False  # inside Django's connect(): never validated, never retried
    in_commit: bool = False  # a COMMIT is in flight
    last_used: float = 0.0  # time.monotonic() of the last use
    idle: float = 0.0  # how long it sat idle before this use
    connected_at: float = 0.0
    close_at: float | None = None  # CONN_MAX_AGE's deadline (None: 0 or forever)
    server_timeout: float | None = None  # the server's idle limit, in seconds
    poll: Any = None  # a select.poll() on the socket, or None without a socket check
    # The least idleness that needs a look: min(server_timeout, validate_after).
    first_limit: float = _NEVER
    validate_after: float | None = None  # the alias's option, kept here for the busy path
    checked_out: Any = None  # what pool.checkout() learnt of the pooled connection

    def set_limits(self, server_timeout: float | None, validate_after: float | None) -> None:
        self.server_timeout, self.validate_after = server_timeout, validate_after
        limits = [limit for limit in (server_timeout, validate_after) if limit is not None]
        self.first_limit = min(limits, default=_NEVER)


class Action(enum.Enum):
    USE = "use"  # use the connection as it is
    PING = "ping"  # ping it first: after_ping() says what next
    CHECK = "check"  # ask is_usable() first (CONN_HEALTH_CHECKS, or an error at a boundary)
    REPLACE = "replace"  # close it; the next use opens a new one through connect()


Verdict = tuple[Action, Reason | None]


def connected(state: GuardState, now: float, max_age: float | None) -> None:
    """A connection was opened. ``CONN_MAX_AGE = 0`` keeps Django's meaning (close
    at the end of a request or job), not a reconnect per query; None: forever."""
    state.connected_at = state.last_used = now
    state.close_at = now + max_age if max_age else None


def before_use(
    state: GuardState, now: float, events: list[tuple[int, int]] | None, check_due: bool
) -> Verdict | None:
    """Outside a transaction, before each use (recorded): None to use it as it is.

    ``events``: the socket's ``poll(0)``; ``check_due``: ``CONN_HEALTH_CHECKS``
    asks for ``is_usable()`` at this use."""
    idle = state.idle = now - state.last_used
    state.last_used = now
    close_at = state.close_at
    if not (
        state.dead
        or events
        or idle >= state.first_limit
        or (close_at is not None and now >= close_at)
        or check_due
    ):
        return None  # the busy path: healthy and recently used
    if state.dead:
        return Action.REPLACE, Reason.ERROR
    action, reason = verdict(
        now, idle, close_at, state.server_timeout, events, state.validate_after
    )
    if action is Action.USE and check_due:
        return Action.CHECK, None
    return action, reason


def verdict(
    now: float,
    idle: float,
    close_at: float | None,
    limit: float | None,
    events: list[tuple[int, int]] | None,
    validate_after: float | None,
) -> Verdict:
    """The before-use checks in the README's order; also for a pooled checkout."""
    if close_at is not None and now >= close_at:
        return Action.REPLACE, Reason.MAX_AGE
    if limit is not None and idle >= limit:
        return Action.REPLACE, Reason.SERVER_TIMEOUT
    if events:
        # A hang-up is final. Readable data on an idle connection is an error
        # packet before a close, or (PostgreSQL) a harmless notice or
        # notification: ask the server before replacing.
        if events[0][1] & HANGUP:
            return Action.REPLACE, Reason.SOCKET_CLOSED
        return Action.PING, Reason.SOCKET_READABLE
    if validate_after is not None and idle >= validate_after:
        return Action.PING, Reason.IDLE
    return Action.USE, None


def after_ping(alive: bool, check_due: bool) -> Verdict:
    if not alive:
        return Action.REPLACE, Reason.VALIDATION_FAILED
    return (Action.CHECK, None) if check_due else (Action.USE, None)


def asks_is_usable(pooled: bool, is_usable: Callable[[], bool]) -> bool:
    """Whether ``CONN_HEALTH_CHECKS`` runs ``is_usable()``.

    Django's own ``is_usable()`` is a bare ping, which the checks above already
    cover without a round trip per request. A subclass's (say, one that refuses
    a read-only standby) or a test's replacement is asked, as the stock backend
    would. With a pool, Django leaves the checks to the pool.
    """
    func = getattr(is_usable, "__func__", None)
    djangos = func is not None and func.__module__.startswith("django.db.backends.")
    return not pooled and not djangos


def in_transaction(state: GuardState, now: float, closed_in_transaction: bool) -> str | None:
    """Inside a transaction, before each use: why to refuse the use, or None.

    Never replace a connection under an open transaction: its work would be
    lost without a word. Refuse a dead one before anything is sent, since an
    interrupted one may hold a stale reply; and one closed inside the block
    (``connection.close()`` in ``atomic()``), the same way on every vendor.
    """
    state.idle = now - state.last_used
    state.last_used = now
    if state.dead:
        return TransactionLost.default_reason
    return CLOSED_IN_TRANSACTION if closed_in_transaction else None


def before_commit(state: GuardState, events: list[tuple[int, int]] | None) -> str | None:
    """Why COMMIT must not be sent (``TransactionLost``), or None to send it.

    A dead connection may hold an unread reply that a COMMIT would take for its
    own. A hung-up socket means the server closed the session before COMMIT (a
    kill, an idle-in-transaction timeout): it rolled back, certainly, so say
    so, rather than "may or may not have committed".
    """
    if state.dead:
        return DEAD_BEFORE_COMMIT
    if events and events[0][1] & HANGUP:
        state.dead = True
        return GONE_BEFORE_COMMIT
    return None


def on_disconnect(
    state: GuardState, *, has_connection: bool, in_transaction: bool
) -> tuple[type[ConnectionLost], str | None] | None:
    """A disconnect: the exception to raise instead and its reason (None: the
    class's default), or None to let Django's own error through."""
    state.dead = True
    if not has_connection:
        return None  # the connect itself failed: Django's own error says it best
    if state.connecting:
        # Lost during session setup or a connection_created receiver:
        # classified like any other loss, never retried from there.
        return ConnectionLost, LOST_IN_SETUP
    if state.in_commit:
        return CommitOutcomeUnknown, None
    if in_transaction:
        return TransactionLost, None
    return ConnectionLost, None


def on_interrupt(state: GuardState, has_connection: bool) -> bool:
    """A non-database exception escaped a driver call (a signal handler,
    ``KeyboardInterrupt``, a gevent ``Timeout``): a reply may be left unread.
    True if this newly makes the connection dead."""
    if not has_connection or state.connecting or state.dead:
        return False
    state.dead = True
    return True


def retry(
    lost: ConnectionLost, state: GuardState, sql: object, many: bool, never_executed: bool
) -> tuple[bool, Reason | str] | None:
    """A statement lost with its connection: (True, why it is safe) to run it once
    more on a fresh connection, (False, why not) for ``OutcomeUnknown``, or None
    to raise ``lost`` as it is: inside a transaction (``TransactionLost``) or
    during ``connect()``, nothing is retried.

    ``never_executed``: the driver says the error proves the statement never ran.
    """
    if type(lost) is not ConnectionLost or state.connecting:
        return None
    if is_marked_idempotent():
        return True, Reason.IDEMPOTENT
    if many:
        return False, EXECUTEMANY_REFUSAL
    if never_executed:
        return True, Reason.NEVER_EXECUTED
    # psycopg's sql.Composed and other non-strings cannot be inspected: a write.
    if isinstance(sql, str) and is_read_only(sql):
        return True, Reason.READ_ONLY
    return False, OutcomeUnknown.default_reason


def after_retry(again: ConnectionLost) -> str | None:
    """The retry was lost too: the reason of its ``ConnectionLost``, or None to raise
    it as it is (say ``OutcomeUnknown`` from the retry's own verdict)."""
    return RETRY_FAILED if type(again) is ConnectionLost else None


def sends_rollback(state: GuardState) -> bool:
    """The server rolls back whatever was open when a session ends, so on a dead
    connection a rollback is certain: close it instead of failing."""
    return not state.dead


class AutocommitLost(enum.Enum):
    RAISE = "raise"
    CLOSE = "close"  # the transaction has ended: losing the session loses nothing
    REOPEN = "reopen"  # nothing has happened in the transaction yet: start it afresh


def autocommit_lost(autocommit: bool, in_atomic_block: bool) -> AutocommitLost:
    """The connection was lost while changing autocommit."""
    if in_atomic_block:
        return AutocommitLost.RAISE
    # Turning autocommit back on after COMMIT or ROLLBACK: the transaction has
    # ended (or died with the session). Turning it off starts a transaction:
    # nothing has happened in it yet, so a fresh connection can start it.
    return AutocommitLost.CLOSE if autocommit else AutocommitLost.REOPEN


def at_boundary(
    dead: bool,
    errors_occurred: bool,
    usable: Callable[[], bool],
    close_at: float | None,
    now: float,
    max_age_closes: bool,
) -> tuple[Reason | None, bool]:
    """At a job boundary, outside a transaction: (why to close, or None to keep
    it; whether Django's ``errors_occurred`` may be cleared).

    ``dead``: the guard knows, so no ping. An error occurred: ``usable()``
    (``is_usable()``) decides. Past Django's ``CONN_MAX_AGE`` deadline, when
    ``max_age_closes``: at a job boundary, or between a broker's polls only
    with ``CONN_MAX_AGE`` above 0 (not a reconnect per poll).
    """
    if dead:
        return Reason.ERROR, False
    if errors_occurred and not usable():
        return Reason.UNUSABLE, False
    if close_at is not None and now >= close_at and max_age_closes:
        return Reason.MAX_AGE, errors_occurred
    return None, errors_occurred
