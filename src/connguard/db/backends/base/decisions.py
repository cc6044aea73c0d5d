"""Every decision the guard makes, as plain functions over one ``GuardState``.

The mixin (``base.py``) calls these from Django's hooks and does what they
say; the drivers (``connguard._drivers``) supply the facts (is this error a
disconnect, did the statement never run); ``connguard._events`` tells what
happened. Nothing here does I/O: every rule of the README's two tables is
unit-tested without a server (tests/test_decisions.py), and against real ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from connguard._events import Reason
from connguard._sql import is_read_only
from connguard.db.backends.base.state import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    HANGUP,
    Action,
    AliasState,
    AutocommitLost,
    GuardState,
    Verdict,
)
from connguard.exceptions import (
    CLOSED_IN_TRANSACTION,
    DEAD_BEFORE_COMMIT,
    EXECUTEMANY_REFUSAL,
    GONE_BEFORE_COMMIT,
    LOST_IN_SETUP,
    RETRY_FAILED,
    WRONG_NODE,
    CommitOutcomeUnknown,
    ConnectionLost,
    OutcomeUnknown,
    TransactionLost,
)  # fmt: skip
from connguard.retry import is_marked_idempotent


def connected(state: GuardState, now: float, max_age: float | None) -> None:
    """A connection was opened. ``CONN_MAX_AGE = 0`` keeps Django's meaning (close
    at the end of a request or job), not a reconnect per query; None: forever."""
    state.connected_at = state.last_used = now
    state.close_at = now + max_age if max_age else None
    state.generation = state.shared.generation
    state.dead_why = Reason.ERROR


def before_use(
    state: GuardState, now: float, events: list[tuple[int, int]] | None, check_due: bool
) -> Verdict | None:
    """Outside a transaction, before each use (recorded): None to use it as it is.
    ``events``: the socket's ``poll(0)``; ``check_due``: ``is_usable()`` is due."""
    idle = state.idle = now - state.last_used
    state.last_used = now
    close_at = state.close_at
    if not (
        state.dead
        or events
        or idle >= state.first_limit
        or (close_at is not None and now >= close_at)
        or check_due
        or state.generation != state.shared.generation
    ):
        return None  # the busy path: healthy and recently used
    if state.dead:
        return Action.REPLACE, state.dead_why
    action, reason = verdict(
        now, idle, close_at, state.server_timeout, events, state.validate_after
    )
    if action is Action.USE and state.generation != state.shared.generation:
        return Action.ROLE, Reason.READ_ONLY  # another connection found the node read-only
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
        # A hang-up is final. Readable data on an idle connection is an error before
        # a close, or a harmless PostgreSQL notice: ask the server before replacing.
        if events[0][1] & HANGUP:
            return Action.REPLACE, Reason.SOCKET_CLOSED
        return Action.PING, Reason.SOCKET_READABLE
    if validate_after is not None and idle >= validate_after:
        return Action.PING, Reason.IDLE
    return Action.USE, None


def after_role(state: GuardState, read_only: bool, check_due: bool) -> Verdict:
    """The node's role, read because another connection found it read-only."""
    if read_only:
        return Action.REPLACE, Reason.READ_ONLY
    state.generation = state.shared.generation
    return (Action.CHECK, None) if check_due else (Action.USE, None)


def after_ping(alive: bool, check_due: bool) -> Verdict:
    """After a ping before use: replace a connection that failed it."""
    if not alive:
        return Action.REPLACE, Reason.VALIDATION_FAILED
    return (Action.CHECK, None) if check_due else (Action.USE, None)


def asks_is_usable(pooled: bool, is_usable: Callable[[], bool]) -> bool:
    """Whether ``CONN_HEALTH_CHECKS`` runs ``is_usable()``: not Django's own, a bare
    ping that the checks above cover without a round trip per request; a
    subclass's or a test's, as the stock backend would; none with a pool."""
    func = getattr(is_usable, "__func__", None)
    djangos = func is not None and func.__module__.startswith("django.db.backends.")
    return not pooled and not djangos


def in_transaction(state: GuardState, now: float, closed_in_transaction: bool) -> str | None:
    """Inside a transaction, before each use: why to refuse it, or None. Never
    replace there: the transaction's work would be lost without a word. Refuse
    a dead one before anything is sent (an interrupted one may hold a stale
    reply), and one closed in the block, the same way on every vendor."""
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


def on_wrong_node(
    state: GuardState, now: float, *, in_transaction: bool
) -> tuple[type[ConnectionLost], str]:
    """A read-only node refused a statement on an alias meant to write: a failover's
    leftover. As a disconnect, but the statement never ran. Every connection of
    the alias checks its node at its next use (the generation moves), and
    connects wait up to the alias's ``failover_timeout`` for a writable node."""
    state.dead, state.dead_why = True, Reason.READ_ONLY
    state.shared.generation += 1  # racing threads may both write n + 1: it still moved
    open_window(state.shared, now)
    return (TransactionLost if in_transaction else ConnectionLost), WRONG_NODE


def refuses_node(role: str, read_only: bool | None) -> bool:
    """At connect: an alias meant to write refuses a read-only node, as libpq's
    ``target_session_attrs=read-write`` does. A replica takes any node."""
    return role == "primary" and read_only is True


def open_window(shared: AliasState, now: float) -> None:
    """A failover (or a restart) may be under way: a node found read-only, or a live
    connection lost. Connects that fail from now on wait for the node, up to
    ``failover_timeout``; the first that succeeds ends the wait. Later findings
    do not move the start, or the wait would never end."""
    if not shared.failing_since:
        shared.failing_since = now


def close_window(shared: AliasState) -> None:
    """A connection reached a writable node: the failover is over."""
    shared.failing_since = 0.0


def connect_wait(
    shared: AliasState,
    now: float,
    attempt: int,
    failover_timeout: float,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """A connect failed in a way that may pass (refused, a read-only node) during a
    failover: seconds to wait before the next attempt, or None to give up.
    Exponential backoff with full jitter, so that a fleet that lost its node
    together does not come back in step."""
    remaining = shared.failing_since + failover_timeout - now
    if not shared.failing_since or remaining <= 0:
        return None
    backoff: float = BACKOFF_BASE * 2 ** min(attempt, 16)
    return min(remaining, rand() * min(BACKOFF_CAP, backoff))


def on_interrupt(state: GuardState, has_connection: bool) -> bool:
    """A non-database exception (a signal handler's, a gevent ``Timeout``) escaped a
    driver call, leaving a reply unread: True if it newly makes the connection dead."""
    if not has_connection or state.connecting or state.dead:
        return False
    state.dead = True
    return True


def retry(
    lost: ConnectionLost, state: GuardState, sql: object, many: bool, never_executed: bool
) -> tuple[bool, Reason | str] | None:
    """A statement lost with its connection: (True, why it is safe) to run it again
    on a fresh connection, (False, why not) for ``OutcomeUnknown``, or None to raise
    ``lost`` as it is (inside a transaction or ``connect()``)."""
    if type(lost) is not ConnectionLost or state.connecting:
        return None
    if is_marked_idempotent():
        return True, Reason.IDEMPOTENT
    if state.dead_why is Reason.READ_ONLY:
        return True, Reason.NEVER_EXECUTED  # a read-only node refused it: even a batch
    if many:
        return False, EXECUTEMANY_REFUSAL
    if never_executed:  # the driver says the error proves it
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
    """On a dead connection a rollback is certain (the server rolls back when the
    session ends): close it instead of failing."""
    return not state.dead


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
    """At a job boundary, outside a transaction: (why to close, or None; whether
    Django's ``errors_occurred`` may be cleared). Dead: no ping. An error:
    ``usable()`` decides. Past ``CONN_MAX_AGE`` when ``max_age_closes`` (at a
    job boundary; between a broker's polls only with ``CONN_MAX_AGE`` > 0)."""
    if dead:
        return Reason.ERROR, False
    if errors_occurred and not usable():
        return Reason.UNUSABLE, False
    if close_at is not None and now >= close_at and max_age_closes:
        return Reason.MAX_AGE, errors_occurred
    return None, errors_occurred
