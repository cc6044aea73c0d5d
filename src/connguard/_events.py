"""The guard's vocabulary, and the one place where what it did is told.

Every reason is a ``Reason`` and every counter a ``Stat``; both are ``str``
enums, so a signal receiver, a log filter or a metrics label compares them with
plain strings (``reason == "max_age"``). ``emit()`` is the only code that
counts, sends a signal and writes a log line for an event, so the three always
agree; the decisions themselves are made in
``connguard.db.backends.base.decisions``.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from django.dispatch import Signal

from connguard import _stats, signals


class Reason(str, enum.Enum):
    """Why the guard did something: the ``reason`` of every signal, log line and counter."""

    # Why a connection is replaced before use (replaced_<reason>), or closed at
    # a job boundary (closed_at_job_boundary_<reason>).
    ERROR = "error"  # it raised a disconnect earlier, or was interrupted
    MAX_AGE = "max_age"  # older than CONN_MAX_AGE
    SERVER_TIMEOUT = "server_timeout"  # idle past the server's own idle limit
    SOCKET_CLOSED = "socket_closed"  # the socket shows the server closed it
    VALIDATION_FAILED = "validation_failed"  # a ping, or is_usable(), failed
    UNUSABLE = "unusable"  # a job boundary: an error occurred and is_usable() fails
    # Why a connection is pinged before use.
    IDLE = "idle"  # idle past validate_after
    SOCKET_READABLE = "socket_readable"  # data waiting on an idle connection
    # How a connection was found dead, besides the ones above.
    DISCONNECT = "disconnect"  # a driver error classified as a disconnect
    INTERRUPTED = "interrupted"  # a non-database exception escaped a driver call
    FORK = "fork"  # inherited by a forked child
    # Why a lost statement was safe to run again.
    IDEMPOTENT = "idempotent"
    NEVER_EXECUTED = "never_executed"
    # A read-only statement (statement_retried), or a read-only node: on an alias
    # meant to write, a failover's leftover (connection_invalidated, _replaced).
    READ_ONLY = "read_only"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:  # f"{reason}": the value on every Python
        return self.value.__format__(spec)


# Recycling closes a healthy connection; the other reasons replace a dead one.
RECYCLE_REASONS = frozenset({Reason.MAX_AGE, Reason.SERVER_TIMEOUT})
REPLACE_REASONS = (
    Reason.ERROR,
    Reason.MAX_AGE,
    Reason.SERVER_TIMEOUT,
    Reason.SOCKET_CLOSED,
    Reason.VALIDATION_FAILED,
    Reason.READ_ONLY,
)
BOUNDARY_REASONS = (Reason.ERROR, Reason.UNUSABLE, Reason.MAX_AGE)


class Stat(str, enum.Enum):
    """The counters of ``connguard.stats(alias)``; one more per reason for two of them."""

    CONNECTIONS_OPENED = "connections_opened"
    VALIDATIONS = "validations"
    VALIDATIONS_FAILED = "validations_failed"
    REPLACED = "replaced"  # and replaced_<reason>
    DISCONNECTS = "disconnects"
    READ_ONLY_NODES = "read_only_nodes"  # connections found on a read-only node
    TRANSACTIONS_LOST = "transactions_lost"
    RETRIES = "retries"
    RETRIES_REFUSED = "retries_refused"
    INTERRUPTED = "interrupted"
    FORKS = "forks_detected"
    CLOSED_AT_JOB_BOUNDARY = "closed_at_job_boundary"  # and closed_at_job_boundary_<reason>

    def __str__(self) -> str:
        return self.value

    def by(self, reason: Reason) -> str:
        return f"{self.value}_{reason.value}"


# Every counter, in the order of docs/stats-and-logging.md.
def _all_stats() -> tuple[str, ...]:
    names: list[str] = []
    for stat in Stat:
        names.append(stat.value)
        reasons = {Stat.REPLACED: REPLACE_REASONS, Stat.CLOSED_AT_JOB_BOUNDARY: BOUNDARY_REASONS}
        names += [stat.by(reason) for reason in reasons.get(stat, ())]
    return tuple(names)


ALL_STATS = _all_stats()

_backends = logging.getLogger("connguard.backends")
_jobs = logging.getLogger("connguard.jobs")


@dataclass(frozen=True)
class _Event:
    counters: tuple[Stat, ...]
    by_reason: Stat | None  # also count <stat>_<reason>
    signal: Signal | None
    logger: logging.Logger | None = None
    level: int = logging.INFO
    message: str = ""  # %-format over the fields of _fields()


_REPLACED = _Event(
    (Stat.REPLACED,),
    Stat.REPLACED,
    signals.connection_replaced,
    _backends,
    logging.INFO,
    "connguard replaced connection %(alias)r (%(reason)s) after %(idle).1fs idle, %(age).1fs old",
)


class Event(enum.Enum):
    """Each thing the guard tells: its counters, its signal, its log line."""

    OPENED = _Event((Stat.CONNECTIONS_OPENED,), None, None)
    VALIDATED = _Event((Stat.VALIDATIONS,), None, signals.connection_validated)
    VALIDATION_FAILED = _Event(
        (Stat.VALIDATIONS, Stat.VALIDATIONS_FAILED),
        None,
        signals.connection_validated,
        _backends,
        logging.DEBUG,
        "connguard validation of %(alias)r failed: %(error)s",
    )
    # is_usable() asked under CONN_HEALTH_CHECKS: counted as a validation, but
    # connection_validated is for the guard's own pings.
    CHECKED = _Event((Stat.VALIDATIONS,), None, None)
    CHECK_FAILED = _Event((Stat.VALIDATIONS, Stat.VALIDATIONS_FAILED), None, None)
    INVALIDATED = _Event((), None, signals.connection_invalidated)
    DISCONNECTED = _Event((Stat.DISCONNECTS,), None, signals.connection_invalidated)
    WRONG_NODE = _Event(
        (Stat.READ_ONLY_NODES,),
        None,
        signals.connection_invalidated,
        _backends,
        logging.WARNING,
        "connguard found connection %(alias)r on a read-only node (%(address)s): the "
        "alias's primary has moved; replacing it",
    )
    # A disconnect on a connection already known dead: counted, not told again.
    DISCONNECTED_AGAIN = _Event((Stat.DISCONNECTS,), None, None)
    INTERRUPTED = _Event(
        (Stat.INTERRUPTED,),
        None,
        signals.connection_invalidated,
        _backends,
        logging.WARNING,
        "connguard: %(error_type)s interrupted a database operation on %(alias)r; the "
        "connection is replaced at its next use",
    )
    TRANSACTION_LOST = _Event((Stat.TRANSACTIONS_LOST,), None, None)
    REPLACED = _REPLACED
    RECYCLED = replace(_REPLACED, signal=signals.connection_recycled)
    RETRIED = _Event(
        (Stat.RETRIES,),
        None,
        signals.statement_retried,
        _backends,
        logging.INFO,
        "connguard retrying a statement on %(alias)r on a fresh connection",
    )
    RETRY_REFUSED = _Event(
        (Stat.RETRIES_REFUSED,),
        None,
        signals.retry_refused,
        _backends,
        logging.WARNING,
        "connguard did not retry a statement on %(alias)r: %(reason)s",
    )
    FORKED = _Event((Stat.FORKS,), None, signals.fork_detected)
    CLOSED_AT_BOUNDARY = _Event(
        (Stat.CLOSED_AT_JOB_BOUNDARY,),
        Stat.CLOSED_AT_JOB_BOUNDARY,
        None,
        _jobs,
        logging.INFO,
        "connguard closed connection %(alias)r at a job boundary (%(reason)s)",
    )


def replacement(reason: Reason) -> Event:
    """A healthy connection closed to be reopened is recycled; a dead one, replaced."""
    return Event.RECYCLED if reason in RECYCLE_REASONS else Event.REPLACED


def emit(
    event: Event,
    wrapper: Any,
    reason: Reason | str | None = None,
    *,
    error: BaseException | None = None,
    level: int | None = None,
    **extra: Any,
) -> None:
    """Count ``event`` for ``wrapper``'s alias, send its signal, and log it.

    ``reason`` is a ``Reason``, or the explanation of a refused retry.
    ``level`` overrides the event's log level.
    """
    spec: _Event = event.value
    alias = wrapper.alias
    keys = [str(stat) for stat in spec.counters]
    if spec.by_reason is not None and isinstance(reason, Reason):
        keys.append(spec.by_reason.by(reason))
    if keys:
        _stats.record(alias, *keys)
    state = getattr(wrapper, "_connguard", None)  # None for a stock wrapper
    idle = state.idle if state is not None else 0.0
    connected_at = state.connected_at if state is not None else 0.0
    age = time.monotonic() - connected_at if connected_at else 0.0
    where = address(wrapper)
    if spec.signal is not None:
        spec.signal.send(
            sender=type(wrapper),
            connection=wrapper,
            alias=alias,
            reason=reason,
            idle=idle,
            age=age,
            error=error,
            address=where,
            **extra,
        )
    log_level = spec.level if level is None else level
    if spec.logger is not None and spec.logger.isEnabledFor(log_level):
        fields = {
            "alias": alias,
            "reason": reason,
            "idle": idle,
            "age": age,
            "error": error,
            "error_type": type(error).__name__,
            "address": where,
        }
        spec.logger.log(log_level, spec.message, fields, extra={"alias": alias, "reason": reason})


def address(wrapper: Any) -> str | None:
    """host:port of the server: the one the connection reached, else the settings'."""
    driver, raw = getattr(wrapper, "_connguard_driver", None), getattr(wrapper, "connection", None)
    if driver is not None and raw is not None:
        try:
            reached = driver.address(raw)
        except Exception:  # a closed connection may not say
            reached = None
        if reached:
            return str(reached)
    settings_dict = getattr(wrapper, "settings_dict", None) or {}
    host, port = settings_dict.get("HOST") or None, settings_dict.get("PORT") or None
    if host is None:
        return None
    return f"{host}:{port}" if port else str(host)
