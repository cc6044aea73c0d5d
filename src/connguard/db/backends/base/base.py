"""The guard: the vendor-neutral mixin behind every connguard ENGINE.

Combine it with any Django backend class, first in the bases::

    class DatabaseWrapper(GuardedWrapperMixin, PostGISDatabaseWrapper):
        pass

It hooks only documented extension points of ``BaseDatabaseWrapper``:

* ``close_if_health_check_failed()``: Django calls it before every cursor and
  before every ``set_autocommit()`` (so also when ``atomic()`` starts), and
  nowhere else. It is the one place every use of a connection passes through.
* ``wrap_database_errors``: every driver call runs inside it, so it sees every
  error, and every interruption, whichever path it came from.
* ``execute_wrappers``: one permanent wrapper retries a statement when that is
  provably safe (``rules.py``).
* ``connect()``, ``_close()``, ``_commit()``, ``_rollback()``: bookkeeping around
  Django's own code, which still does the work. Replacing a connection means
  ``close()`` and then Django's ordinary ``connect()``, so session setup
  (isolation level, time zone, role, ``connection_created``) is replayed.
"""

from __future__ import annotations

import logging
import select
import time
import weakref
from typing import TYPE_CHECKING, Any

from django.utils.functional import cached_property

from connguard import _stats as stats
from connguard import signals
from connguard._drivers import Driver, driver_for
from connguard.conf import OPTIONS_KEY, GuardOptions, parse_options
from connguard.db.backends.base import fork
from connguard.db.backends.base.errors import GuardedErrorWrapper
from connguard.db.backends.base.rules import retry_verdict
from connguard.exceptions import (
    CommitOutcomeUnknown,
    ConnectionLost,
    OutcomeUnknown,
    TransactionLost,
)

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

# A pooled driver connection outlives the wrapper's hold on it: remember when it
# was last used and what the server's idle limit is, so a checkout neither
# forgets how long it sat in the pool nor asks the server again.
_pooled: weakref.WeakKeyDictionary[Any, tuple[float, float | None]] = weakref.WeakKeyDictionary()


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
        # Set by a disconnect or an interruption: the connection is replaced at
        # its next use outside a transaction, and refused inside one.
        self._connguard_dead = False
        self._connguard_in_commit = False
        self._connguard_last_used = 0.0
        self._connguard_idle = 0.0  # how long the connection sat idle before this use
        self._connguard_connected_at = 0.0
        self._connguard_close_at: float | None = None
        self._connguard_server_timeout: float | None = None
        self._connguard_poll: Any = None
        if self.connguard_options.enabled:
            self.execute_wrappers.append(self._connguard_execute)
            fork.track(self)

    # ##### Connection lifecycle #####

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        # Ours, not the driver's: it must never reach connect().
        params.pop(OPTIONS_KEY, None)
        return params

    def connect(self) -> None:
        for attempt in range(3):
            self._connguard_connect_once()
            if attempt == 2 or not (self.connguard_options.enabled and self._connguard_pooled()):
                return
            # A pooled connection may have sat idle, or died, in the pool: check
            # it before first use, as any other use would be.
            self.close_if_health_check_failed()
            if self.connection is not None:
                return

    def _connguard_connect_once(self) -> None:
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
        remembered = None
        if self._connguard_pooled():
            remembered = _pooled.get(self.connection)
            if remembered is None:
                # Not seen by any wrapper yet: idle since the pool opened it.
                self._connguard_last_used = getattr(self.connection, "_created_at", now)
        if remembered is not None:
            self._connguard_last_used, self._connguard_server_timeout = remembered
        else:
            self._connguard_server_timeout = self._connguard_learn_server_timeout()
        self._connguard_dead = False
        stats.record(self.alias, stats.CONNECTIONS_OPENED)

    def _connguard_pooled(self) -> bool:
        return bool(getattr(self, "pool", None))

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
            if self.connection is not None and self._connguard_pooled():
                _pooled[self.connection] = (
                    self._connguard_last_used,
                    self._connguard_server_timeout,
                )
            return super()._close()  # type: ignore[misc]
        if self.connection is not None and self._connguard_pooled():
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

    def _commit(self) -> Any:
        if self._connguard_dead and self.connection is not None:
            # An interrupted statement left a reply unread: a COMMIT sent now
            # could read that reply as its own. Nothing was committed.
            raise TransactionLost(
                alias=self.alias,
                vendor=self.vendor,
                reason="an earlier error or interruption left the connection unusable inside "
                "the transaction, so COMMIT was not sent and nothing was committed",
            )
        self._connguard_in_commit = True
        try:
            return super()._commit()  # type: ignore[misc]
        finally:
            self._connguard_in_commit = False

    def _rollback(self) -> Any:
        # The server rolls back whatever was open when the session ends, so on a
        # dead connection a rollback is certain: close it instead of failing.
        if not self._connguard_dead:
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
            if self.in_atomic_block or not self.connguard_options.enabled:
                raise
            if autocommit:
                # Turning autocommit back on after COMMIT or ROLLBACK: the
                # transaction has ended (or died with the session), so losing
                # the session now loses nothing. Keep the on_commit hooks of a
                # transaction that did commit: close() would drop them.
                hooks = self.run_on_commit
                self._connguard_replace("error")
                self.run_on_commit = hooks
                return
            # Starting a transaction: nothing has happened in it yet, so a fresh
            # connection can start it instead.
            self._connguard_replace("error")
            self.ensure_connection()
            super()._set_autocommit(autocommit)  # type: ignore[misc]

    def _connguard_discard(self) -> None:
        self._connguard_dead = True
        try:
            self.close()
        except Exception:
            self.connection = None

    def _connguard_after_fork(self) -> None:
        """In a forked child: drop the inherited connection without any I/O."""
        raw, self.connection = self.connection, None
        if raw is not None:
            try:
                fd = self._connguard_driver.fileno(raw)
            except Exception:
                fd = None
            fork.detach_socket(fd)
            fork._orphans.append(raw)
            stats.record(self.alias, stats.FORKS)
            self._connguard_send(signals.fork_detected, "fork")
        if self.in_atomic_block:
            # As Django's close() does inside atomic(): the block must fail.
            self.closed_in_transaction = self.needs_rollback = True
        self._connguard_poll = None
        self._connguard_dead = False
        pools = getattr(type(self), "_connection_pools", None)
        pool = pools.pop(self.alias, None) if pools else None
        if pool is not None:
            for pooled in list(getattr(pool, "_pool", ())):
                try:
                    fork.detach_socket(self._connguard_driver.fileno(pooled))
                except Exception:
                    pass
            fork._orphans.append(pool)

    def connguard_status(self) -> dict[str, Any]:
        """What the guard knows about this thread's connection, for diagnostics."""
        now = time.monotonic()
        connected = self.connection is not None
        return {
            "alias": self.alias,
            "vendor": self.vendor,
            "driver": self._connguard_driver.name,
            "connected": connected,
            "dead": self._connguard_dead if connected else False,
            "age": now - self._connguard_connected_at if connected else None,
            "idle": now - self._connguard_last_used if connected else None,
            "server_idle_limit": self._connguard_server_timeout if connected else None,
            "options": dict(vars(self.connguard_options)),
        }

    # ##### The guard #####

    def close_if_health_check_failed(self) -> None:
        if self.connection is None or self._connguard_connecting:
            return
        if not self.connguard_options.enabled:
            super().close_if_health_check_failed()
            return
        now = time.monotonic()
        self._connguard_idle = idle = now - self._connguard_last_used
        self._connguard_last_used = now
        if self.in_atomic_block or not self.autocommit:
            # Never replace a connection under an open transaction: its work
            # would be lost without a word. Refuse a dead one before anything
            # is sent, since an interrupted one may hold a stale reply.
            if self._connguard_dead:
                raise TransactionLost(alias=self.alias, vendor=self.vendor)
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
                if events[0][1] & _HANGUP:
                    reason = "socket_closed"
                    self._connguard_send(signals.connection_invalidated, reason)
                else:
                    reason = self._connguard_validate("socket_readable")
            elif (
                self.connguard_options.validate_after is not None
                and idle >= self.connguard_options.validate_after
            ):
                reason = self._connguard_validate("idle")
            else:
                return
        if reason is not None:
            self._connguard_replace(reason)

    def _connguard_send(self, signal: Any, reason: str, **extra: Any) -> None:
        now = time.monotonic()
        signal.send(
            sender=type(self),
            connection=self,
            alias=self.alias,
            reason=reason,
            idle=self._connguard_idle,
            age=now - self._connguard_connected_at if self._connguard_connected_at else 0.0,
            error=extra.pop("error", None),
            **extra,
        )

    def _connguard_validate(self, why: str) -> str | None:
        stats.record(self.alias, stats.VALIDATIONS)
        try:
            self._connguard_driver.ping(self.connection)
        except Exception as exc:
            stats.record(self.alias, stats.VALIDATIONS_FAILED)
            self._connguard_send(signals.connection_validated, why, ok=False, error=exc)
            self._connguard_send(signals.connection_invalidated, "validation_failed", error=exc)
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
        self._connguard_send(signals.connection_validated, why, ok=True)
        return None

    def _connguard_replace(self, reason: str) -> None:
        """Close the connection so that its next use opens a new one, and say so."""
        logger.info(
            "connguard replaced connection %r (%s) after %.1fs idle, %.1fs old",
            self.alias,
            reason,
            self._connguard_idle,
            time.monotonic() - self._connguard_connected_at,
            extra={"alias": self.alias, "reason": reason},
        )
        stats.record(self.alias, stats.REPLACED, stats.REPLACED_PREFIX + reason)
        recycled = reason in ("max_age", "server_timeout")
        signal = signals.connection_recycled if recycled else signals.connection_replaced
        self._connguard_send(signal, reason)
        self._connguard_discard()
        # The caller (_cursor() or set_autocommit()) calls ensure_connection()
        # next, which opens the replacement through Django's connect().

    # ##### Errors and retries #####

    @cached_property
    def wrap_database_errors(self) -> GuardedErrorWrapper:
        return GuardedErrorWrapper(self)

    def _connguard_on_error(self, exc: BaseException) -> ConnectionLost | None:
        """Note a driver error; return the exception to raise instead, if any."""
        if not self.connguard_options.enabled or not self._connguard_driver.is_disconnect(
            exc, self.connection
        ):
            return None
        if not self._connguard_dead:
            self._connguard_send(signals.connection_invalidated, "disconnect", error=exc)
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
        return lost(*exc.args, alias=self.alias, vendor=self.vendor)

    def _connguard_on_interrupt(self, exc: BaseException) -> None:
        """A non-database exception escaped a driver call (a signal handler,
        KeyboardInterrupt, a gevent Timeout): a reply may be left unread."""
        if self.connection is None or self._connguard_connecting or self._connguard_dead:
            return
        self._connguard_dead = True
        stats.record(self.alias, stats.INTERRUPTED)
        self._connguard_send(signals.connection_invalidated, "interrupted", error=exc)
        logger.warning(
            "connguard: %s interrupted a database operation on %r; the connection is "
            "replaced at its next use",
            type(exc).__name__,
            self.alias,
            extra={"alias": self.alias},
        )

    def _connguard_execute(
        self, execute: Any, sql: Any, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        try:
            return execute(sql, params, many, context)
        except ConnectionLost as lost:
            if type(lost) is not ConnectionLost:
                raise  # inside a transaction: never retried
            allowed, why = retry_verdict(lost.__cause__, sql, many)
            if not allowed:
                stats.record(self.alias, stats.RETRIES_REFUSED)
                self._connguard_send(signals.retry_refused, why, error=lost.__cause__)
                logger.warning(
                    "connguard did not retry a statement on %r: %s",
                    self.alias,
                    why,
                    extra={"alias": self.alias},
                )
                raise OutcomeUnknown(
                    *lost.args, alias=self.alias, vendor=self.vendor, reason=why
                ) from lost.__cause__
            self._connguard_send(signals.statement_retried, why, error=lost.__cause__)
        return self._connguard_retry(execute, sql, params, many, context)

    def _connguard_retry(
        self, execute: Any, sql: Any, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        stats.record(self.alias, stats.RETRIES)
        logger.info(
            "connguard retrying a statement on %r on a fresh connection",
            self.alias,
            extra={"alias": self.alias},
        )
        self._connguard_replace("error")
        self.ensure_connection()
        cursor = context["cursor"]
        stale, name = cursor.cursor, getattr(cursor.cursor, "name", None)
        with self.wrap_database_errors:
            cursor.cursor = self.create_cursor(name)
        try:
            stale.close()
        except Exception:
            pass
        try:
            return execute(sql, params, many, context)
        except ConnectionLost as again:
            if type(again) is not ConnectionLost:
                raise
            raise ConnectionLost(
                *again.args,
                alias=self.alias,
                vendor=self.vendor,
                reason="retried once on a fresh connection, and the retry failed too",
            ) from again.__cause__
