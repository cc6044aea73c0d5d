"""The guard around a connection's life: connect, pooled checkout, close, fork.

Mixed into ``GuardedWrapperMixin``. Replacing a connection is ``close()`` and
then Django's ordinary ``connect()``, so session setup (isolation level, time
zone, role, ``connection_created``) is replayed; what the guard learns at
connect (the socket to poll, the server's idle limit) goes into the wrapper's
``GuardState``.
"""

from __future__ import annotations

import functools
import logging
import select
import time
from typing import TYPE_CHECKING, Any

from connguard._drivers import Driver
from connguard._events import Event, emit
from connguard.conf import OPTIONS_KEY, GuardOptions
from connguard.db.backends.base import fork, pool
from connguard.db.backends.base.decisions import POLL_MASK, connected

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    _Base = BaseDatabaseWrapper
else:
    _Base = object

logger = logging.getLogger("connguard.backends")


class ConnectionHooks(_Base):
    """Connect, check out, close: bookkeeping around Django's own code."""

    # GuardedWrapperMixin's.
    _connguard: Any
    _connguard_driver: Driver

    if TYPE_CHECKING:

        @property
        def connguard_options(self) -> GuardOptions: ...

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        # Ours, not the driver's: it must never reach connect().
        params.pop(OPTIONS_KEY, None)
        return params

    def connect(self) -> None:
        state = self._connguard
        state.connecting = True
        # Dead until connect() completes: if it fails half-way (say in
        # init_connection_state), the half-set-up connection is never reused.
        state.dead = True
        state.checked_out = None
        try:
            super().connect()
        finally:
            state.connecting = False
        self._connguard_on_connect()

    def get_new_connection(self, conn_params: Any) -> Any:
        if not (self.connguard_options.enabled and self._connguard_pooled()):
            return super().get_new_connection(conn_params)
        # Before Django's connect() sets the connection up or sends
        # connection_created: nothing of that may see a dead pooled connection.
        draw = functools.partial(super().get_new_connection, conn_params)
        raw, self._connguard.checked_out = pool.checkout(self, draw)
        return raw

    def _connguard_on_connect(self) -> None:
        state = self._connguard
        connected(state, time.monotonic(), self.settings_dict["CONN_MAX_AGE"])
        validate_after = self.connguard_options.validate_after
        checked_out, state.checked_out = state.checked_out, None
        if checked_out is not None:
            state.last_used, limit, state.poll = checked_out
        else:
            state.poll = self._connguard_make_poll(self.connection)
            try:
                limit = self._connguard_read_server_timeout(self.connection, ping=False)
            except Exception as exc:
                logger.warning(
                    "connguard could not read the server idle limit of %r: %s",
                    self.alias,
                    exc,
                    extra={"alias": self.alias},
                )
                state.set_limits(None, validate_after)
                if self._connguard_driver.is_disconnect(exc, self.connection):
                    return  # lost already: it stays dead, and its next use replaces it
                limit = None
        state.set_limits(limit, validate_after)
        state.dead = False
        emit(Event.OPENED, self)

    def _connguard_pooled(self) -> bool:
        return bool(getattr(self, "pool", None))

    def _connguard_make_poll(self, raw: Any) -> Any:
        if not (self.connguard_options.enabled and self.connguard_options.socket_check):
            return None
        try:
            fd = self._connguard_driver.fileno(raw)
        except Exception:  # a driver without a usable socket: no socket check
            return None
        if fd is None:
            return None
        poller = select.poll()
        poller.register(fd, POLL_MASK)
        return poller

    def _connguard_read_server_timeout(self, raw: Any, *, ping: bool) -> float | None:
        """The server's idle limit for ``raw``: declared, or read from the server.

        Raises the driver's error if the connection is dead. With ``ping``, a
        declared limit is confirmed by a ping, so that either way one round trip
        proves the connection alive.
        """
        declared = self.connguard_options.server_timeout
        if declared != "auto" or not self.connguard_options.enabled:
            if ping:
                self._connguard_driver.ping(raw)
            return declared if declared != "auto" else None
        limit = self._connguard_driver.server_idle_limit(raw)
        if not getattr(raw, "autocommit", True) or (raw is self.connection and not self.autocommit):
            # The SELECT opened a transaction; don't hand it to the user.
            raw.commit()
        return limit

    def _close(self) -> Any:
        state = self._connguard
        pooled = self.connection is not None and self._connguard_pooled()
        if not state.dead:
            if pooled:
                pool.remember(self.connection, (state.last_used, state.server_timeout, state.poll))
            return super()._close()  # type: ignore[misc]
        if pooled:
            # Closed first, so that the pool discards it instead of lending it again.
            try:
                self.connection.close()
            except Exception:
                pass
        try:
            return super()._close()  # type: ignore[misc]
        except Exception:
            # Closing a connection that is already dead can only fail in
            # uninteresting ways, and must not hide the error that killed it.
            return None

    def _connguard_discard(self) -> None:
        self._connguard.dead = True
        try:
            self.close()
        except Exception:
            self.connection = None

    def _connguard_after_fork(self) -> None:
        fork.after_fork(self)
