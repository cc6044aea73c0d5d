"""The guard at a transaction's edges: COMMIT, ROLLBACK and autocommit changes.

Mixed into ``GuardedWrapperMixin``; the rules are ``decisions.before_commit()``
and ``decisions.autocommit_lost()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from connguard._events import Event, Reason, emit
from connguard.db.backends.base.decisions import (
    autocommit_lost,
    before_commit,
    sends_rollback,
)
from connguard.db.backends.base.state import AutocommitLost
from connguard.exceptions import ConnectionLost, TransactionLost

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    _Base = BaseDatabaseWrapper
else:
    _Base = object


class TransactionHooks(_Base):
    """COMMIT only when it can be honest about the outcome; ROLLBACK that cannot fail."""

    # GuardedWrapperMixin's.
    _connguard: Any

    if TYPE_CHECKING:

        @property
        def connguard_options(self) -> Any: ...

    _connguard_discard: Callable[[], None]
    _connguard_replace: Callable[[Reason], None]

    def _commit(self) -> Any:
        state = self._connguard
        if self.connection is not None:
            was_dead, poller = state.dead, state.poll
            events = poller.poll(0) if poller is not None and not was_dead else None
            refusal = before_commit(state, events)
            if refusal is not None:
                if not was_dead:
                    # The socket hung up: the server ended the session.
                    emit(Event.DISCONNECTED, self, Reason.SOCKET_CLOSED)
                    emit(Event.TRANSACTION_LOST, self)
                raise TransactionLost(alias=self.alias, vendor=self.vendor, reason=refusal)
        state.in_commit = True
        try:
            return super()._commit()  # type: ignore[misc]
        finally:
            state.in_commit = False

    def _rollback(self) -> Any:
        if sends_rollback(self._connguard):
            try:
                return super()._rollback()  # type: ignore[misc]
            except ConnectionLost:
                pass
        self._connguard_discard()
        return None

    def set_autocommit(
        self, autocommit: bool, force_begin_transaction_with_broken_autocommit: bool = False
    ) -> None:
        if (
            autocommit
            and self.connection is None
            and not self.in_atomic_block
            and self.settings_dict["AUTOCOMMIT"]
            and self.connguard_options.enabled
        ):
            # The connection was discarded (a disconnect, a ROLLBACK on a dead
            # connection, a lost COMMIT reply) and the next connect() starts in
            # autocommit anyway. Connecting now, as Django would at the end of
            # atomic(), could only replace the error being handled (say
            # CommitOutcomeUnknown) with a connect error.
            self.autocommit = True
            if self.run_commit_hooks_on_set_autocommit_on:
                self.run_and_clear_commit_hooks()
                self.run_commit_hooks_on_set_autocommit_on = False
            return
        super().set_autocommit(autocommit, force_begin_transaction_with_broken_autocommit)

    def _set_autocommit(self, autocommit: bool) -> None:
        try:
            super()._set_autocommit(autocommit)  # type: ignore[misc]
        except ConnectionLost:
            if not self.connguard_options.enabled:
                raise
            then = autocommit_lost(autocommit, self.in_atomic_block)
            if then is AutocommitLost.RAISE:
                raise
            # Keep the on_commit hooks of a transaction that did commit: close()
            # would drop them.
            hooks = self.run_on_commit
            self._connguard_replace(Reason.ERROR)
            if then is AutocommitLost.CLOSE:
                self.run_on_commit = hooks
                return
            self.ensure_connection()
            super()._set_autocommit(autocommit)  # type: ignore[misc]
