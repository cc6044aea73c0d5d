"""The guard: the vendor-neutral mixin behind every connguard ENGINE.

Combine it with any Django backend class, first in the bases::

    class DatabaseWrapper(GuardedWrapperMixin, PostGISDatabaseWrapper):
        pass

It hooks only documented extension points of ``BaseDatabaseWrapper``:

* ``close_if_health_check_failed()``: Django calls it before every cursor and
  before every ``set_autocommit()`` (so also when ``atomic()`` starts), and
  nowhere else. It is the one place every use of a connection passes through.
* ``wrap_database_errors``: every driver call runs inside it, so it sees every
  error whichever path raised it.
* ``connect()``/``_close()``/``_commit()``: bookkeeping around Django's own code,
  which still does all the work. Replacing a connection means ``close()`` and
  then Django's ordinary ``connect()``, so session setup (isolation level, time
  zone, role, ``connection_created``) is replayed every time.
"""

from __future__ import annotations

import logging
import select
import time
from typing import TYPE_CHECKING, Any

from django.utils.functional import cached_property

from connguard import _stats as stats
from connguard._drivers import Driver, driver_for
from connguard.conf import OPTIONS_KEY, GuardOptions, parse_options
from connguard.db.backends.base.errors import GuardedErrorWrapper
from connguard.exceptions import CommitOutcomeUnknown, ConnectionLost, TransactionLost

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    _Base = BaseDatabaseWrapper
else:
    _Base = object

logger = logging.getLogger("connguard.backends")

# POLLRDHUP (Linux) reports a FIN from the server even before we read the EOF.
_RDHUP: int = getattr(select, "POLLRDHUP", 0)
_POLL_MASK = select.POLLIN | select.POLLPRI | _RDHUP
_HANGUP = select.POLLHUP | select.POLLERR | select.POLLNVAL | _RDHUP


class GuardedWrapperMixin(_Base):
    """Validate, and if need be replace, a connection before each use.

    Per use outside a transaction, on a healthy connection, it costs one clock
    read, a few comparisons and one non-blocking ``poll()`` of the socket.
    Inside a transaction it only records the time: it never replaces or retries
    there, because that would silently drop the transaction's work.
    """

    connguard_options: GuardOptions
    _connguard_driver: Driver
    Database: Any  # the DB-API module, set by each vendor backend

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connguard_options = parse_options(self.alias, self.settings_dict)
        self._connguard_driver = driver_for(self.Database)
        self._connguard_connecting = False
        # Set by a disconnect error; the connection is replaced at its next use
        # outside a transaction.
        self._connguard_dead = False
        self._connguard_in_commit = False
        self._connguard_last_used = 0.0
        self._connguard_connected_at = 0.0
        self._connguard_close_at: float | None = None
        self._connguard_server_timeout: float | None = None
        self._connguard_poll: Any = None

    # ##### Connection lifecycle #####

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        # Ours, not the driver's: it must never reach connect().
        params.pop(OPTIONS_KEY, None)
        return params

    def connect(self) -> None:
        self._connguard_connecting = True
        # Dead until connect() completes: if it fails half-way (say in
        # init_connection_state), the half-set-up connection is never reused.
        self._connguard_dead = True
        try:
            super().connect()
        finally:
            self._connguard_connecting = False
        self._connguard_on_connect()

    def _connguard_on_connect(self) -> None:
        now = time.monotonic()
        self._connguard_connected_at = self._connguard_last_used = now
        # CONN_MAX_AGE = 0 keeps Django's meaning (close at the end of a request
        # or job), so it must not turn into a reconnect per query here; None
        # means "forever".
        max_age = self.settings_dict["CONN_MAX_AGE"]
        self._connguard_close_at = now + max_age if max_age else None
        self._connguard_poll = self._connguard_make_poll()
        self._connguard_server_timeout = self._connguard_learn_server_timeout()
        self._connguard_dead = False
        stats.record(self.alias, stats.CONNECTIONS_OPENED)

    def _connguard_make_poll(self) -> Any:
        if not (self.connguard_options.enabled and self.connguard_options.socket_check):
            return None
        try:
            fd = self._connguard_driver.fileno(self.connection)
        except Exception:  # a driver without a usable socket: no socket check
            return None
        if fd is None:
            return None
        poller = select.poll()
        poller.register(fd, _POLL_MASK)
        return poller

    def _connguard_learn_server_timeout(self) -> float | None:
        declared = self.connguard_options.server_timeout
        if declared != "auto" or not self.connguard_options.enabled:
            return declared if declared != "auto" else None
        if getattr(self, "pool", None):
            # A pooled connection is "connected" at every checkout; a query per
            # checkout is too much. Declare server_timeout to use it with a pool.
            return None
        try:
            limit = self._connguard_driver.server_idle_limit(self.connection)
            if not self.autocommit:
                # The SELECT opened a transaction; don't hand it to the user.
                self.connection.commit()
        except Exception as exc:
            logger.warning(
                "connguard could not read the server idle limit of %r: %s",
                self.alias,
                exc,
                extra={"alias": self.alias},
            )
            return None
        return limit

    def _close(self) -> Any:
        if not self._connguard_dead:
            return super()._close()  # type: ignore[misc]
        try:
            return super()._close()  # type: ignore[misc]
        except Exception:
            # Closing a connection that is already dead can only fail in
            # uninteresting ways, and must not hide the error that killed it.
            return None

    def _commit(self) -> Any:
        self._connguard_in_commit = True
        try:
            return super()._commit()  # type: ignore[misc]
        finally:
            self._connguard_in_commit = False

    # ##### The guard #####

    def close_if_health_check_failed(self) -> None:
        if self.connection is None or self._connguard_connecting:
            return
        if not self.connguard_options.enabled:
            super().close_if_health_check_failed()
            return
        now = time.monotonic()
        idle = now - self._connguard_last_used
        self._connguard_last_used = now
        if self.in_atomic_block or not self.autocommit:
            # Never replace a connection under an open transaction: its work
            # would be lost without a word. A dead one fails the next statement
            # with TransactionLost instead.
            return
        reason: str | None
        if self._connguard_dead:
            reason = "error"
        elif self._connguard_close_at is not None and now >= self._connguard_close_at:
            reason = "max_age"
        elif self._connguard_server_timeout is not None and idle >= self._connguard_server_timeout:
            reason = "server_timeout"
        else:
            poller = self._connguard_poll
            events = poller.poll(0) if poller is not None else None
            if events:
                # A hang-up is final. Readable data on an idle connection is an
                # error packet before a close, or (PostgreSQL) a harmless notice
                # or notification: ask the server before replacing.
                reason = "socket_closed" if events[0][1] & _HANGUP else self._connguard_validate()
            elif (
                self.connguard_options.validate_after is not None
                and idle >= self.connguard_options.validate_after
            ):
                reason = self._connguard_validate()
            else:
                return
        if reason is not None:
            self._connguard_replace(reason, idle, now)

    def _connguard_validate(self) -> str | None:
        stats.record(self.alias, stats.VALIDATIONS)
        try:
            self._connguard_driver.ping(self.connection)
        except Exception as exc:
            stats.record(self.alias, stats.VALIDATIONS_FAILED)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "connguard validation of %r failed: %s",
                    self.alias,
                    exc,
                    extra={"alias": self.alias},
                )
            return "validation_failed"
        except BaseException:
            # Interrupted half-way (KeyboardInterrupt, a time-limit signal): the
            # protocol state is unknown, so never reuse this connection.
            self._connguard_dead = True
            raise
        return None

    def _connguard_replace(self, reason: str, idle: float, now: float) -> None:
        logger.info(
            "connguard replaced connection %r (%s) after %.1fs idle, %.1fs old",
            self.alias,
            reason,
            idle,
            now - self._connguard_connected_at,
            extra={"alias": self.alias, "reason": reason},
        )
        stats.record(self.alias, stats.REPLACED, stats.REPLACED_PREFIX + reason)
        self._connguard_dead = True
        try:
            self.close()
        except Exception:
            self.connection = None
        # The caller (_cursor() or set_autocommit()) calls ensure_connection()
        # next, which opens the replacement through Django's connect().

    # ##### Errors #####

    @cached_property
    def wrap_database_errors(self) -> GuardedErrorWrapper:
        return GuardedErrorWrapper(self)

    def _connguard_on_error(self, exc: BaseException) -> ConnectionLost | None:
        """Note a driver error; return the exception to raise instead, if any."""
        if not self.connguard_options.enabled or not self._connguard_driver.is_disconnect(
            exc, self.connection
        ):
            return None
        self._connguard_dead = True
        stats.record(self.alias, stats.DISCONNECTS)
        if self._connguard_connecting or self.connection is None:
            return None
        lost: type[ConnectionLost]
        if self._connguard_in_commit:
            lost = CommitOutcomeUnknown
        elif self.in_atomic_block or not self.autocommit:
            lost = TransactionLost
        else:
            lost = ConnectionLost
        if lost is not ConnectionLost:
            stats.record(self.alias, stats.TRANSACTIONS_LOST)
        logger.info(
            "connguard: connection %r was lost (%s)",
            self.alias,
            lost.__name__,
            extra={"alias": self.alias},
        )
        return lost(*exc.args, alias=self.alias, vendor=self.vendor)
