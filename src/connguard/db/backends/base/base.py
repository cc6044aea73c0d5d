"""The guard: the vendor-neutral mixin behind every connguard ENGINE.

Combine it with any Django backend class, first in the bases::

    class DatabaseWrapper(GuardedWrapperMixin, PostGISDatabaseWrapper):
        pass

It overrides methods of ``BaseDatabaseWrapper`` and relies on how Django calls
them, most of which are private to Django, not documented extension points:

* ``close_if_health_check_failed()``: Django calls it before every cursor (in
  ``_cursor()``) and in every ``set_autocommit()`` (so also when ``atomic()``
  starts, and once inside ``connect()`` itself), and nowhere else. It is the
  one place every use of a connection passes through.
* ``wrap_database_errors``: every driver call runs inside it, so it sees every
  error, and every interruption, whichever path it came from.
* ``make_cursor()`` / ``make_debug_cursor()``: the cursor wrapper Django
  returns gets a small mixin whose ``_execute_with_wrappers()`` puts the guard
  innermost, around the driver call, to retry a statement when that is provably
  safe (``rules.py``), on a new raw cursor assigned to the ``CursorWrapper``.
  ``execute_wrappers`` stays the user's own list.
* ``connect()``, ``get_new_connection()``, ``_close()``, ``_commit()``,
  ``_rollback()``, ``set_autocommit()``, ``_set_autocommit()``: bookkeeping
  around Django's own code, which still does the work. Replacing a connection
  means ``close()`` and then Django's ordinary ``connect()``, so session setup
  (isolation level, time zone, role, ``connection_created``) is replayed.
* Django's state: ``in_atomic_block``, ``autocommit``, ``closed_in_transaction``,
  ``needs_rollback``, ``errors_occurred``, ``run_on_commit`` and the commit hook
  flag, and the PostgreSQL backend's ``pool`` and ``_connection_pools``.

Every such assumption is listed in docs/how-it-works.md#django-contract and
pinned by a test in tests/test_django_contract.py, which fails with the Django
version and the assumption when a Django release changes one.
"""

from __future__ import annotations

import functools
import logging
import select
import time
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import cached_property

from connguard import _stats as stats
from connguard import signals
from connguard._drivers import Driver, driver_for
from connguard.conf import OPTIONS_KEY, GuardOptions, parse_options
from connguard.db.backends.base import fork, pool
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

_GONE_BEFORE_COMMIT = (
    "the server had closed the connection before COMMIT was sent, so it rolled the "
    "transaction back and nothing in it was committed; COMMIT was not sent"
)
_LOST_IN_SETUP = (
    "lost during Django's session setup (init_connection_state() or a connection_created "
    "receiver), before any statement of yours was sent"
)
_CLOSED_IN_TXN = (
    "the connection was closed inside the transaction (connection.close() in atomic(), or "
    "an error that closed it), so the server rolled the transaction back and nothing in it "
    "was committed"
)

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

    @cached_property
    def connguard_options(self) -> GuardOptions:
        """``OPTIONS["connguard"]``, parsed at the first access, then a plain attribute.

        Invalid options must not raise while Django builds the wrapper: it
        builds ``connections["default"]`` while loading the models, so that
        would crash ``django.setup()`` and every management command, ``check``
        included. They raise at the first connect instead (``check_settings()``),
        and ``connguard.E001`` reports them.
        """
        return parse_options(self.alias, self.settings_dict)

    _connguard_driver: Driver
    Database: Any  # the DB-API module, set by each vendor backend
    health_check_enabled: bool  # CONN_HEALTH_CHECKS, set by Django; not in django-stubs
    pool: Any  # Django's psycopg pool: the PostgreSQL backend only, None without one

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:
            enabled = self.connguard_options.enabled
        except ImproperlyConfigured:
            enabled = False  # raised again at the first connect: see connguard_options
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
        # What pool.checkout() learnt of the pooled connection being connected.
        self._connguard_checked_out: pool.Known | None = None
        if enabled:
            fork.track(self)

    def check_settings(self) -> None:
        # The first thing Django's connect() does: invalid options stop the
        # connection before anything is opened.
        _ = self.connguard_options
        super().check_settings()

    # ##### Connection lifecycle #####

    def make_cursor(self, cursor: Any) -> Any:
        return _guard_cursor(super().make_cursor(cursor), self)

    def make_debug_cursor(self, cursor: Any) -> Any:
        return _guard_cursor(super().make_debug_cursor(cursor), self)

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
        self._connguard_checked_out = None
        try:
            super().connect()
        finally:
            self._connguard_connecting = False
        self._connguard_on_connect()

    def get_new_connection(self, conn_params: Any) -> Any:
        if not (self.connguard_options.enabled and self._connguard_pooled()):
            return super().get_new_connection(conn_params)
        # Before Django's connect() sets the connection up or sends
        # connection_created: nothing of that may see a dead pooled connection.
        draw = functools.partial(super().get_new_connection, conn_params)
        raw, self._connguard_checked_out = pool.checkout(self, draw)
        return raw

    def _connguard_on_connect(self) -> None:
        now = time.monotonic()
        self._connguard_connected_at = self._connguard_last_used = now
        # CONN_MAX_AGE = 0 keeps Django's meaning (close at the end of a request
        # or job), so it must not turn into a reconnect per query here; None
        # means "forever".
        max_age = self.settings_dict["CONN_MAX_AGE"]
        self._connguard_close_at = now + max_age if max_age else None
        checked_out, self._connguard_checked_out = self._connguard_checked_out, None
        if checked_out is not None:
            self._connguard_last_used, self._connguard_server_timeout, self._connguard_poll = (
                checked_out
            )
        else:
            self._connguard_poll = self._connguard_make_poll(self.connection)
            try:
                self._connguard_server_timeout = self._connguard_read_server_timeout(
                    self.connection, ping=False
                )
            except Exception as exc:
                logger.warning(
                    "connguard could not read the server idle limit of %r: %s",
                    self.alias,
                    exc,
                    extra={"alias": self.alias},
                )
                self._connguard_server_timeout = None
                if self._connguard_driver.is_disconnect(exc, self.connection):
                    # Lost already: it stays marked dead, and its next use replaces it.
                    return
        self._connguard_dead = False
        stats.record(self.alias, stats.CONNECTIONS_OPENED)

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
        poller.register(fd, _POLL_MASK)
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
        if not self._connguard_dead:
            if self.connection is not None and self._connguard_pooled():
                pool.remember(
                    self.connection,
                    (
                        self._connguard_last_used,
                        self._connguard_server_timeout,
                        self._connguard_poll,
                    ),
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
        poller = self._connguard_poll
        if poller is not None and self.connection is not None:
            events = poller.poll(0)
            if events and events[0][1] & _HANGUP:
                # The server closed the session before COMMIT was sent (a kill, an
                # idle-in-transaction timeout): it rolled back, certainly. Say so,
                # rather than "may or may not have committed".
                self._connguard_dead = True
                stats.record(self.alias, stats.DISCONNECTS, stats.TRANSACTIONS_LOST)
                self._connguard_send(signals.connection_invalidated, "socket_closed")
                raise TransactionLost(
                    alias=self.alias, vendor=self.vendor, reason=_GONE_BEFORE_COMMIT
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

    def connguard_close_reason(self, now: float, *, job_boundary: bool) -> str | None:
        """Why a job boundary must close this connection, or None to keep it.

        ``connguard.jobs`` asks at each boundary, outside a transaction, with
        ``now`` from ``time.monotonic()``. ``"error"``: the guard knows it is
        dead, so no ping. ``"unusable"``: an error occurred and ``is_usable()``
        fails (a usable one has ``errors_occurred`` cleared). ``"max_age"``:
        past Django's ``CONN_MAX_AGE`` deadline; with ``CONN_MAX_AGE = 0`` only
        at a ``job_boundary``, since between a broker's polls it would mean a
        reconnect per poll.
        """
        if self.connection is None:
            return None
        if self._connguard_dead:
            return "error"
        if self.errors_occurred:
            if not self.is_usable():
                return "unusable"
            self.errors_occurred = False
        close_at = self.close_at
        if close_at is not None and now >= close_at:
            if job_boundary or self.settings_dict["CONN_MAX_AGE"]:
                return "max_age"
        return None

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
            # is sent, since an interrupted one may hold a stale reply; and one
            # closed inside the block (connection.close() in atomic()), the same
            # way on every vendor.
            if self._connguard_dead:
                raise TransactionLost(alias=self.alias, vendor=self.vendor)
            if self.closed_in_transaction:
                raise TransactionLost(alias=self.alias, vendor=self.vendor, reason=_CLOSED_IN_TXN)
            return
        poller = self._connguard_poll
        events = poller.poll(0) if poller is not None else None
        close_at, limit = self._connguard_close_at, self._connguard_server_timeout
        validate_after = self.connguard_options.validate_after
        if not (
            self._connguard_dead
            or events
            or (close_at is not None and now >= close_at)
            or (limit is not None and idle >= limit)
            or (validate_after is not None and idle >= validate_after)
            or (self.health_check_enabled and not self.health_check_done)
        ):
            return  # the busy path: healthy and recently used
        if self._connguard_dead:
            reason: str | None = "error"
        else:
            reason, _ = self._connguard_verdict(self.connection, events, now, idle, close_at, limit)
        if reason is None and self.health_check_enabled and not self.health_check_done:
            reason = self._connguard_health_check()
        if reason is not None:
            self._connguard_replace(reason)

    def _connguard_health_check(self) -> str | None:
        """``CONN_HEALTH_CHECKS``: Django's check, due at the first use after
        ``close_if_unusable_or_obsolete()`` re-armed it (once per request or job).

        Django's own ``is_usable()`` is a bare ping, which the guard's checks
        above already cover without a round trip per request, so it is skipped.
        An ``is_usable()`` of a subclass (say, one that refuses a server that is
        now a read-only standby) or a test's replacement is asked, as the stock
        backend would. With a pool, Django leaves the checks to the pool.
        """
        self.health_check_done = True
        is_usable = getattr(self.is_usable, "__func__", None)
        if self._connguard_pooled() or (
            is_usable is not None and is_usable.__module__.startswith("django.db.backends.")
        ):
            return None
        stats.record(self.alias, stats.VALIDATIONS)
        try:
            usable = self.is_usable()
        except BaseException:
            # Half-way through a round trip of unknown length: never reuse it.
            self._connguard_dead = True
            raise
        if usable:
            return None
        stats.record(self.alias, stats.VALIDATIONS_FAILED)
        self._connguard_send(signals.connection_invalidated, "validation_failed")
        return "validation_failed"

    def _connguard_verdict(
        self,
        raw: Any,
        events: list[tuple[int, int]] | None,
        now: float,
        idle: float,
        close_at: float | None,
        limit: float | None,
    ) -> tuple[str | None, bool]:
        """Why a connection outside a transaction must be replaced (or None), and
        whether a ping was sent to find out. The checks in the README's order."""
        if close_at is not None and now >= close_at:
            return "max_age", False
        if limit is not None and idle >= limit:
            return "server_timeout", False
        if events:
            # A hang-up is final. Readable data on an idle connection is an
            # error packet before a close, or (PostgreSQL) a harmless notice
            # or notification: ask the server before replacing.
            if events[0][1] & _HANGUP:
                self._connguard_send(signals.connection_invalidated, "socket_closed")
                return "socket_closed", False
            return self._connguard_validate("socket_readable", raw), True
        validate_after = self.connguard_options.validate_after
        if validate_after is not None and idle >= validate_after:
            return self._connguard_validate("idle", raw), True
        return None, False

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

    def _connguard_validate(self, why: str, raw: Any) -> str | None:
        stats.record(self.alias, stats.VALIDATIONS)
        try:
            self._connguard_driver.ping(raw)
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
        self._connguard_announce_replacement(reason)
        self._connguard_discard()
        # The caller (_cursor() or set_autocommit()) calls ensure_connection()
        # next, which opens the replacement through Django's connect().

    def _connguard_checkout_failed(self, reason: str, error: BaseException | None) -> None:
        """pool.checkout() found a dead pooled connection and discards it."""
        if error is not None:
            self._connguard_send(signals.connection_invalidated, reason, error=error)
        self._connguard_announce_replacement(reason)

    def _connguard_announce_replacement(self, reason: str) -> None:
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
        if self.connection is None:
            return None  # the connect itself failed: Django's own error says it best
        if self._connguard_connecting:
            # Lost during Django's session setup, or in a connection_created
            # receiver: classified like any other loss, never retried from here.
            return ConnectionLost(
                *exc.args, alias=self.alias, vendor=self.vendor, reason=_LOST_IN_SETUP
            )
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


def _execute_guarded(
    execute: Any, sql: Any, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """The permanent execute wrapper; Django passes the wrapper in ``context``."""
    wrapper: GuardedWrapperMixin = context["connection"]
    try:
        return execute(sql, params, many, context)
    except ConnectionLost as lost:
        if type(lost) is not ConnectionLost or wrapper._connguard_connecting:
            raise  # inside a transaction, or during connect(): never retried
        allowed, why = retry_verdict(lost.__cause__, sql, many)
        if not allowed:
            stats.record(wrapper.alias, stats.RETRIES_REFUSED)
            wrapper._connguard_send(signals.retry_refused, why, error=lost.__cause__)
            logger.warning(
                "connguard did not retry a statement on %r: %s",
                wrapper.alias,
                why,
                extra={"alias": wrapper.alias},
            )
            raise OutcomeUnknown(
                *lost.args, alias=wrapper.alias, vendor=wrapper.vendor, reason=why
            ) from lost.__cause__
        wrapper._connguard_send(signals.statement_retried, why, error=lost.__cause__)
    return wrapper._connguard_retry(execute, sql, params, many, context)


class _GuardedCursor:
    """Mixed into the vendor's CursorWrapper class: the guard runs innermost, around
    the driver call, so user execute_wrappers see one call and execute_wrappers
    stays the user's list."""

    def _execute_with_wrappers(self, sql: Any, params: Any, many: bool, executor: Any) -> Any:
        guarded = functools.partial(_execute_guarded, executor)
        return super()._execute_with_wrappers(sql, params, many, guarded)  # type: ignore[misc]


_guarded_classes: dict[type, type] = {}


def _guard_cursor(wrapped: Any, wrapper: Any) -> Any:
    if not wrapper.connguard_options.enabled:
        return wrapped
    cls = type(wrapped)
    guarded = _guarded_classes.get(cls)
    if guarded is None:
        guarded = _guarded_classes[cls] = type(f"Guarded{cls.__name__}", (_GuardedCursor, cls), {})
    wrapped.__class__ = guarded
    return wrapped
