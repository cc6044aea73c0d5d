"""The guard: the vendor-neutral mixin behind every connguard ENGINE.

Combine it with any Django backend class, first in the bases::

    class DatabaseWrapper(GuardedWrapperMixin, PostGISDatabaseWrapper):
        pass

It is the thin layer between Django's hooks and the guard's decisions
(``decisions.py``, over one ``GuardState`` in ``self._connguard``). The
modules beside it, one concern each: ``transactions.py`` (COMMIT, ROLLBACK,
autocommit), ``errors.py`` (every driver error and interruption),
``cursor.py`` (the retry), ``pool.py`` (Django's PostgreSQL pool) and
``fork.py``. The methods it overrides are mostly private to Django, not
documented extension points:

* ``close_if_health_check_failed()``: Django calls it before every cursor (in
  ``_cursor()``) and in every ``set_autocommit()`` (so also when ``atomic()``
  starts, and once inside ``connect()`` itself), and nowhere else. It is the
  one place every use of a connection passes through.
* ``wrap_database_errors``: every driver call runs inside it.
* ``make_cursor()`` / ``make_debug_cursor()``: the retry runs innermost, in a
  mixin of the cursor wrapper; ``execute_wrappers`` stays the user's own list.
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

import logging
import time
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import cached_property

from connguard._drivers import Driver, driver_for
from connguard._events import RECYCLE_REASONS, Event, Reason, emit, replacement
from connguard.conf import GuardOptions, parse_options
from connguard.db.backends.base import cursor, fork
from connguard.db.backends.base.decisions import (
    after_ping,
    after_role,
    asks_is_usable,
    at_boundary,
    before_use,
    in_transaction,
    open_window,
)
from connguard.db.backends.base.errors import GuardedErrorWrapper
from connguard.db.backends.base.lifecycle import ConnectionHooks
from connguard.db.backends.base.state import Action, GuardState, alias_state
from connguard.db.backends.base.transactions import TransactionHooks
from connguard.exceptions import TransactionLost

logger = logging.getLogger("connguard.backends")
_monotonic = time.monotonic


class GuardedWrapperMixin(ConnectionHooks, TransactionHooks):
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

    _connguard: GuardState
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
        self._connguard = GuardState(shared=alias_state(self.alias))
        if enabled:
            fork.track(self)

    def check_settings(self) -> None:
        # The first thing Django's connect() does: invalid options stop the
        # connection before anything is opened.
        _ = self.connguard_options
        super().check_settings()

    # ##### Connection lifecycle #####

    def make_cursor(self, cursor_: Any) -> Any:
        return cursor.guard(super().make_cursor(cursor_), self)

    def make_debug_cursor(self, cursor_: Any) -> Any:
        return cursor.guard(super().make_debug_cursor(cursor_), self)

    # ##### The guard #####

    def close_if_health_check_failed(self) -> None:
        state = self._connguard
        if self.connection is None or state.connecting:
            return
        if not self.connguard_options.enabled:
            super().close_if_health_check_failed()
            return
        now = _monotonic()
        if self.in_atomic_block or not self.autocommit:
            refusal = in_transaction(state, now, self.closed_in_transaction)
            if refusal is not None:
                raise TransactionLost(alias=self.alias, vendor=self.vendor, reason=refusal)
            return
        poller = state.poll
        check_due = self.health_check_enabled and not self.health_check_done
        verdict = before_use(state, now, poller.poll(0) if poller is not None else None, check_due)
        if verdict is not None:
            reason = self._connguard_settle(*verdict, self.connection, check_due)
            if reason is not None:
                self._connguard_replace(reason)

    def _connguard_settle(
        self, action: Action, reason: Reason | None, raw: Any, check_due: bool
    ) -> Reason | None:
        """Carry out a verdict's ping and health check: why to replace, or None to use."""
        if action is Action.ROLE:
            read_only = self._connguard_role(raw)
            if read_only is None:
                return Reason.VALIDATION_FAILED
            action, reason = after_role(self._connguard, read_only, check_due)
        if action is Action.PING and reason is not None:
            action, reason = after_ping(self._connguard_ping(reason, raw), check_due)
        if action is Action.CHECK:
            return self._connguard_health_check()
        if reason is Reason.SOCKET_CLOSED:
            emit(Event.INVALIDATED, self, reason)
        return reason if action is Action.REPLACE else None

    def _connguard_ping(self, why: Reason, raw: Any) -> bool:
        try:
            self._connguard_driver.ping(raw)
        except Exception as exc:
            emit(Event.VALIDATION_FAILED, self, why, error=exc, ok=False)
            emit(Event.INVALIDATED, self, Reason.VALIDATION_FAILED, error=exc)
            return False
        except BaseException:
            # Interrupted half-way (KeyboardInterrupt, a time-limit signal): the
            # protocol state is unknown, so never reuse this connection.
            emit(Event.CHECKED, self)
            self._connguard.dead = True
            raise
        emit(Event.VALIDATED, self, why, ok=True)
        return True

    def _connguard_role(self, raw: Any) -> bool | None:
        """Whether the node is read-only now (one round trip); None if the connection is dead."""
        driver = self._connguard_driver
        try:
            if driver.node_read_only(raw) is None:  # MySQL: only a query tells
                return bool(driver.server_facts(raw)[1])
            driver.ping(raw)  # PostgreSQL: the reply carries any change of the role
            return bool(driver.node_read_only(raw))
        except Exception as exc:
            emit(Event.INVALIDATED, self, Reason.VALIDATION_FAILED, error=exc)
            return None

    def _connguard_health_check(self) -> Reason | None:
        """``CONN_HEALTH_CHECKS``: Django's check, due at the first use after
        ``close_if_unusable_or_obsolete()`` re-armed it (once per request or job)."""
        self.health_check_done = True
        if not asks_is_usable(self._connguard_pooled(), self.is_usable):
            return None
        try:
            usable = self.is_usable()
        except BaseException:
            # Half-way through a round trip of unknown length: never reuse it.
            emit(Event.CHECKED, self)
            self._connguard.dead = True
            raise
        if usable:
            emit(Event.CHECKED, self)
            return None
        emit(Event.CHECK_FAILED, self)
        emit(Event.INVALIDATED, self, Reason.VALIDATION_FAILED)
        return Reason.VALIDATION_FAILED

    def _connguard_replace(self, reason: Reason) -> None:
        """Close the connection so that its next use opens a new one, and say so."""
        if reason not in RECYCLE_REASONS:  # a live connection lost: a restart, a failover?
            open_window(self._connguard.shared, _monotonic())
        emit(replacement(reason), self, reason)
        self._connguard_discard()
        # The caller (_cursor() or set_autocommit()) calls ensure_connection()
        # next, which opens the replacement through Django's connect().

    def _connguard_checkout_failed(self, reason: Reason, error: BaseException | None) -> None:
        """pool.checkout() found a dead pooled connection and discards it."""
        if error is not None:
            emit(Event.INVALIDATED, self, reason, error=error)
        emit(replacement(reason), self, reason)

    @cached_property
    def wrap_database_errors(self) -> GuardedErrorWrapper:
        return GuardedErrorWrapper(self)

    # ##### Asked from outside #####

    def connguard_close_reason(self, now: float, *, job_boundary: bool) -> Reason | None:
        """Why a job boundary must close this connection, or None to keep it.

        ``connguard.jobs`` asks at each boundary, outside a transaction, with
        ``now`` from ``time.monotonic()``; ``decisions.at_boundary()`` decides.
        """
        if self.connection is None:
            return None
        max_age_closes = job_boundary or bool(self.settings_dict["CONN_MAX_AGE"])
        reason, cleared = at_boundary(
            self._connguard.dead,
            self.errors_occurred,
            self.is_usable,
            self.close_at,
            now,
            max_age_closes,
        )
        if cleared:
            self.errors_occurred = False
        return reason

    def connguard_status(self) -> dict[str, Any]:
        """What the guard knows about this thread's connection, for diagnostics."""
        state, now = self._connguard, _monotonic()
        is_open = self.connection is not None
        return {
            "alias": self.alias,
            "vendor": self.vendor,
            "driver": self._connguard_driver.name,
            "connected": is_open,
            "dead": state.dead if is_open else False,
            "age": now - state.connected_at if is_open else None,
            "idle": now - state.last_used if is_open else None,
            "server_idle_limit": state.server_timeout if is_open else None,
            "role": self.connguard_options.role,
            # The node's role as read at connect: "read-write", "read-only", None (not known).
            "node": None
            if not is_open or state.read_only is None
            else ("read-only" if state.read_only else "read-write"),
            "options": dict(vars(self.connguard_options)),
        }
