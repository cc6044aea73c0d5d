"""The guard around a connection's life: connect, pooled checkout, close, fork.

Mixed into ``GuardedWrapperMixin``. Replacing a connection is ``close()`` and
then Django's ordinary ``connect()``, so session setup (isolation level, time
zone, role, ``connection_created``) is replayed; what the guard learns at
connect (the socket to poll, the server's idle limit) goes into the wrapper's
``GuardState``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import select
import time
from typing import TYPE_CHECKING, Any

from connguard._drivers import Driver
from connguard._events import Event, Reason, address, emit
from connguard.conf import OPTIONS_KEY, GuardOptions
from connguard.db.backends.base import fork, pool
from connguard.db.backends.base.decisions import (
    close_window,
    connect_wait,
    connected,
    open_window,
    refuses_node,
)
from connguard.db.backends.base.state import POLL_MASK
from connguard.exceptions import FailoverTimeout

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
        """Django's connect(), retried while a failover is under way (a read-only
        node, a refused connect): ``decisions.connect_wait()`` says how long."""
        state, started = self._connguard, time.monotonic()
        for attempt in itertools.count():
            state.connecting = True
            # Dead until connect() completes: if it fails half-way (say in
            # init_connection_state), the half-set-up connection is never reused.
            state.dead = True
            state.checked_out = None
            try:
                super().connect()
            except Exception as exc:
                if not (
                    self.connguard_options.enabled and self._connguard_driver.connect_retryable(exc)
                ):
                    raise
                self._connguard_wait(attempt, started, exc)
                continue
            finally:
                state.connecting = False
            if self._connguard_on_connect():
                return
            # A read-only node: refused, as target_session_attrs=read-write does.
            emit(Event.WRONG_NODE, self, Reason.READ_ONLY)
            open_window(state.shared, time.monotonic())
            self._connguard_discard()
            self._connguard_wait(attempt, started, None)

    def _connguard_wait(self, attempt: int, started: float, error: BaseException | None) -> None:
        """Sleep before the next connect, or raise if the failover window is over."""
        self._connguard_discard()  # a half-set-up connection is never reused
        if self._connguard_backoff(attempt):
            return
        if error is not None and attempt == 0:
            raise error  # no failover under way: Django's own error says it best
        # Waited since the failover was found (the wait's own start), else since
        # this connect began.
        since = self._connguard.shared.failing_since or started
        raise FailoverTimeout(
            alias=self.alias,
            vendor=self.vendor,
            node=address(self) or "",
            waited=time.monotonic() - since,
            failover_timeout=self.connguard_options.failover_timeout,
        ) from error

    def _connguard_backoff(self, attempt: int) -> bool:
        """Sleep before attempt ``attempt + 1`` while a failover is under way; False
        (no sleep) once its window is over, or if there is none."""
        timeout = self.connguard_options.failover_timeout
        wait = connect_wait(self._connguard.shared, time.monotonic(), attempt, timeout)
        if wait is None:
            return False
        time.sleep(wait)
        return True

    def get_new_connection(self, conn_params: Any) -> Any:
        if not (self.connguard_options.enabled and self._connguard_pooled()):
            return super().get_new_connection(conn_params)
        # Before Django's connect() sets the connection up or sends
        # connection_created: nothing of that may see a dead pooled connection.
        draw = functools.partial(super().get_new_connection, conn_params)
        raw, self._connguard.checked_out = pool.checkout(self, draw)
        return raw

    def _connguard_on_connect(self) -> bool:
        """Learn what the guard needs of the new connection; False for a read-only
        node on an alias meant to write."""
        state, raw = self._connguard, self.connection
        connected(state, time.monotonic(), self.settings_dict["CONN_MAX_AGE"])
        validate_after = self.connguard_options.validate_after
        checked_out, state.checked_out = state.checked_out, None
        if checked_out is not None:
            state.last_used, limit, state.poll = checked_out
            read_only = self._connguard_driver.node_read_only(raw)
        else:
            state.poll = self._connguard_make_poll(raw)
            try:
                limit, read_only = self._connguard_learn(raw, ping=False)
            except Exception as exc:
                logger.warning(
                    "connguard could not read the server idle limit of %r: %s",
                    self.alias,
                    exc,
                    extra={"alias": self.alias},
                )
                state.set_limits(None, validate_after)
                if self._connguard_driver.is_disconnect(exc, raw):
                    return True  # lost already: it stays dead, and its next use replaces it
                limit = read_only = None
        state.set_limits(limit, validate_after)
        state.read_only = read_only
        if self.connguard_options.enabled and refuses_node(self.connguard_options.role, read_only):
            return False
        state.dead = False
        # Taken: any failover is over (a node whose role is not known shows
        # itself with its first refusal, which starts the wait again).
        close_window(state.shared)
        emit(Event.OPENED, self)
        return True

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

    def _connguard_learn(self, raw: Any, *, ping: bool) -> tuple[float | None, bool | None]:
        """The server's idle limit for ``raw`` (declared, or read from the server)
        and whether the node is read-only (None: not known).

        Raises the driver's error if the connection is dead. With ``ping``, a
        declared limit is confirmed by a ping, so that either way one round trip
        proves the connection alive.
        """
        driver, declared = self._connguard_driver, self.connguard_options.server_timeout
        if declared != "auto" or not self.connguard_options.enabled:
            if ping:
                driver.ping(raw)
            return (declared if declared != "auto" else None), driver.node_read_only(raw)
        facts = driver.server_facts(raw)
        if not getattr(raw, "autocommit", True) or (raw is self.connection and not self.autocommit):
            # The SELECT opened a transaction; don't hand it to the user.
            raw.commit()
        return facts

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
