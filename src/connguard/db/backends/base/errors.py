"""Every driver error and interruption, seen in ``wrap_database_errors``.

Every driver call Django makes (execute, fetch, commit, rollback, autocommit
changes, close, connect) runs inside ``wrap_database_errors``, so this is the
one place that sees every error: the driver says whether it is a disconnect,
``decisions.on_disconnect()`` which exception to raise instead.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from django.db.utils import DatabaseErrorWrapper
from django.db.utils import Error as DjangoError

from connguard._events import Event, Reason, emit
from connguard.db.backends.base import decisions
from connguard.exceptions import ConnectionLost


class GuardedErrorWrapper(DatabaseErrorWrapper):
    """Django's error translation, plus disconnect and interruption detection."""

    wrapper: Any  # set by DatabaseErrorWrapper.__init__; untyped in django-stubs

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_value is None:
            # The common case, on every driver call: nothing to translate, and
            # no second frame for Django's __exit__, which would only return.
            return
        wrapper = self.wrapper
        if isinstance(exc_value, wrapper.Database.Error):
            replacement = on_error(wrapper, exc_value)
            if replacement is not None:
                wrapper.errors_occurred = True
                raise replacement.with_traceback(traceback) from exc_value
        elif not isinstance(exc_value, (DjangoError, GeneratorExit)):
            # Not the database's error: an exception from a signal handler or
            # a timeout escaped the driver mid-call.
            on_interrupt(wrapper, exc_value)
        super().__exit__(exc_type, exc_value, traceback)


def on_error(wrapper: Any, exc: BaseException) -> ConnectionLost | None:
    """Note a driver error; return the exception to raise instead, if any."""
    options, driver = wrapper.connguard_options, wrapper._connguard_driver
    if not options.enabled:
        return None
    state = wrapper._connguard
    in_transaction = wrapper.in_atomic_block or not wrapper.autocommit
    if driver.is_disconnect(exc, wrapper.connection):
        # Told once per connection; counted every time.
        emit(Event.DISCONNECTED_AGAIN if state.dead else Event.DISCONNECTED, wrapper,
             Reason.DISCONNECT, error=exc)  # fmt: skip
        outcome = decisions.on_disconnect(
            state, has_connection=wrapper.connection is not None, in_transaction=in_transaction
        )
        if outcome is None:
            return None
        lost, reason = outcome
    elif options.role == "primary" and driver.is_wrong_node(exc, wrapper.connection):
        emit(Event.WRONG_NODE, wrapper, Reason.READ_ONLY, error=exc)
        lost, reason = decisions.on_wrong_node(
            state, time.monotonic(), in_transaction=in_transaction
        )
    else:
        return None
    if lost is not ConnectionLost:
        emit(Event.TRANSACTION_LOST, wrapper)
    return lost(*exc.args, alias=wrapper.alias, vendor=wrapper.vendor, reason=reason)


def on_interrupt(wrapper: Any, exc: BaseException) -> None:
    if decisions.on_interrupt(wrapper._connguard, wrapper.connection is not None):
        emit(Event.INTERRUPTED, wrapper, Reason.INTERRUPTED, error=exc)
