"""The retry: innermost, around the driver call, in a mixin of Django's cursor wrapper.

User ``execute_wrappers`` see one call, and ``execute_wrappers`` stays the
user's list. ``decisions.retry()`` says whether a lost statement may run
again; if so it runs once more on a new raw cursor of a fresh connection,
assigned to the same ``CursorWrapper``.
"""

from __future__ import annotations

import functools
import itertools
import time
from typing import Any

from connguard._events import Event, Reason, emit
from connguard.db.backends.base import decisions
from connguard.exceptions import ConnectionLost, OutcomeUnknown


def execute_guarded(
    execute: Any, sql: Any, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """The innermost execute wrapper; Django passes the wrapper in ``context``."""
    wrapper = context["connection"]
    try:
        return execute(sql, params, many, context)
    except ConnectionLost as lost:
        cause = lost.__cause__
        never_executed = cause is not None and wrapper._connguard_driver.never_executed(cause)
        verdict = decisions.retry(lost, wrapper._connguard, sql, many, never_executed)
        if verdict is None:
            raise
        allowed, why = verdict
        if not allowed:
            emit(Event.RETRY_REFUSED, wrapper, why, error=cause)
            raise OutcomeUnknown(
                *lost.args, alias=wrapper.alias, vendor=wrapper.vendor, reason=str(why)
            ) from cause
        emit(Event.RETRIED, wrapper, why, error=cause)
    return _again(wrapper, execute, sql, params, many, context)


def _again(
    wrapper: Any, execute: Any, sql: Any, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """Run the statement once more, on a fresh connection's new raw cursor; while
    a read-only node keeps refusing it, again, up to the alias's failover_timeout."""
    state, started = wrapper._connguard, time.monotonic()
    for attempt in itertools.count():
        wrapper._connguard_replace(state.dead_why)
        wrapper.ensure_connection()
        cursor = context["cursor"]
        stale, name = cursor.cursor, getattr(cursor.cursor, "name", None)
        with wrapper.wrap_database_errors:
            cursor.cursor = wrapper.create_cursor(name)
        try:
            stale.close()
        except Exception:
            pass
        try:
            return execute(sql, params, many, context)
        except ConnectionLost as again:
            cause = again.__cause__
            if type(again) is ConnectionLost and (
                state.dead_why is Reason.READ_ONLY
                or (cause is not None and wrapper._connguard_driver.never_executed(cause))
            ):
                # It never ran again: a read-only node (one whose role the
                # connect could not read), or a node going down under the new
                # connection. While a failover is under way, wait and run it again.
                if state.dead_why is Reason.READ_ONLY:
                    wrapper._connguard_wait(attempt, started, again)
                    continue
                if wrapper._connguard_backoff(attempt):
                    continue
            reason = decisions.after_retry(again)
            if reason is None:
                raise
            raise ConnectionLost(
                *again.args, alias=wrapper.alias, vendor=wrapper.vendor, reason=reason
            ) from again.__cause__
    raise AssertionError("unreachable")  # pragma: no cover


class GuardedCursor:
    """Mixed into the vendor's CursorWrapper class, before it."""

    def _execute_with_wrappers(self, sql: Any, params: Any, many: bool, executor: Any) -> Any:
        guarded = functools.partial(execute_guarded, executor)
        return super()._execute_with_wrappers(sql, params, many, guarded)  # type: ignore[misc]


_guarded_classes: dict[type, type] = {}


def guard(wrapped: Any, wrapper: Any) -> Any:
    """Give the cursor wrapper Django made the retry, unless the guard is off."""
    if not wrapper.connguard_options.enabled:
        return wrapped
    cls = type(wrapped)
    guarded = _guarded_classes.get(cls)
    if guarded is None:
        guarded = _guarded_classes[cls] = type(f"Guarded{cls.__name__}", (GuardedCursor, cls), {})
    wrapped.__class__ = guarded
    return wrapped
