"""Make the server end a connection: the tools of ``manage.py connguard drill``
and of the pytest plugin.

Both faults end only the session of the wrapper they are given: a kill is sent
from a second connection that this module opens itself and closes again, and an
expiry lowers the idle limit of that one session (``SET SESSION``), so no data
and no global setting changes. Each waits until the server's close reaches the
socket, with a ``poll()`` rather than a sleep.
"""

from __future__ import annotations

import copy
import select
import time
from typing import Any

from connguard._drivers import driver_for, driver_for_error

# A session's own idle limit, lowered for that session only. MySQL counts whole
# seconds (1 is its minimum); PostgreSQL (14+) takes milliseconds.
EXPIRE_SQL = {
    "mysql": "SET SESSION wait_timeout = 1",
    "postgresql": "SET SESSION idle_session_timeout = 250",
}
KILL_SQL = {
    "mysql": "KILL CONNECTION %s",
    "postgresql": "SELECT pg_terminate_backend(%s)",
}
# ER_KILL_DENIED_ERROR; SQLSTATE insufficient_privilege.
_DENIED_MYSQL = 1095
_DENIED_POSTGRESQL = "42501"
_DENIED = {"mysql": _DENIED_MYSQL, "postgresql": _DENIED_POSTGRESQL}
_HANGUP = select.POLLHUP | getattr(select, "POLLRDHUP", 0)


class FaultError(Exception):
    """The fault could not be made; the message says why, naming the alias."""


def first_line(exc: BaseException) -> str:
    """The exception's class and the first line of its message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def open_wrapper(settings_dict: dict[str, Any], alias: str, *, pool: bool = True) -> Any:
    """A new, private ``DatabaseWrapper`` with these settings, not in ``connections``.

    ``pool=False`` drops Django's PostgreSQL ``OPTIONS["pool"]``: a plain
    connection, never one lent by (or returned to) a pool.
    """
    from django.db.utils import load_backend

    settings_dict = copy.deepcopy(settings_dict)
    if not pool:
        settings_dict["OPTIONS"].pop("pool", None)
    backend = load_backend(settings_dict["ENGINE"]).DatabaseWrapper
    if hasattr(backend, "connguard_options"):
        # A probe looks at whatever node answers, and never waits for a failover.
        options = settings_dict["OPTIONS"].setdefault("connguard", {})
        options.update(role="replica", failover_timeout=0)
    return backend(settings_dict, alias)


def session_id(wrapper: Any) -> int:
    """The server's id of the wrapper's current session, without a round trip."""
    raw = wrapper.connection
    if wrapper.vendor == "mysql":
        return int(raw.thread_id())
    return int(raw.info.backend_pid)  # psycopg 3, and psycopg2 >= 2.8


def socket_fd(wrapper: Any) -> int | None:
    return driver_for(wrapper.Database).fileno(wrapper.connection)


def wait_closed(fd: int | None, timeout: float) -> bool:
    """Wait until the server's close (FIN) reaches the socket; False on timeout."""
    if fd is None:
        return True
    poller = select.poll()
    # Only hang-ups: PostgreSQL writes a FATAL message before it closes, and
    # waking up for that data would turn this into a busy loop.
    poller.register(fd, _HANGUP)
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        if any(mask & _HANGUP for _, mask in poller.poll(remaining * 1000)):
            return True
    return False


def _await_close(fd: int | None, timeout: float, what: str) -> None:
    if not wait_closed(fd, timeout):
        raise FaultError(f"the server did not close {what} within {timeout:g}s")


def _supported(wrapper: Any) -> None:
    if wrapper.vendor not in KILL_SQL:
        raise FaultError(
            f"connguard can end sessions on MySQL, MariaDB and PostgreSQL only; "
            f"alias {wrapper.alias!r} is {wrapper.vendor}"
        )
    if wrapper.connection is None:
        raise FaultError(f"alias {wrapper.alias!r} has no open connection to end")


def _denied(exc: BaseException) -> bool:
    driver = driver_for_error(exc)
    return driver is not None and driver.error_code(exc) == _DENIED[driver.vendor]


def kill(wrapper: Any, timeout: float = 10.0) -> int:
    """End the wrapper's session from a second connection; return its id."""
    from django.db import DatabaseError

    _supported(wrapper)
    ident, fd = session_id(wrapper), socket_fd(wrapper)
    killer = open_wrapper(wrapper.settings_dict, f"{wrapper.alias}:connguard-killer", pool=False)
    try:
        with killer.cursor() as cursor:
            cursor.execute(KILL_SQL[wrapper.vendor], [ident])
            if wrapper.vendor == "postgresql" and not cursor.fetchone()[0]:
                raise FaultError(
                    f"PostgreSQL did not end session {ident} of {wrapper.alias!r}: "
                    "pg_terminate_backend() returned false"
                )
    except DatabaseError as exc:
        if _denied(exc):
            raise FaultError(
                f"the database user of {wrapper.alias!r} may not end its own session "
                f"{ident}: {first_line(exc)}. Ending a session needs the right to run "
                f"{KILL_SQL[wrapper.vendor] % ident!r} (KILL on MySQL and MariaDB, "
                "EXECUTE on pg_terminate_backend() on PostgreSQL)"
            ) from exc
        raise FaultError(
            f"could not end session {ident} of {wrapper.alias!r}: {first_line(exc)}"
        ) from exc
    finally:
        killer.close()
    _await_close(fd, timeout, f"session {ident} of {wrapper.alias!r}")
    return ident


def expire(wrapper: Any, timeout: float = 10.0) -> None:
    """Lower the session's idle limit, then wait until the server ends it."""
    _supported(wrapper)
    if wrapper.in_atomic_block or not wrapper.get_autocommit():
        raise FaultError(
            f"alias {wrapper.alias!r} is inside a transaction: a session idle limit applies "
            "between transactions only"
        )
    fd = socket_fd(wrapper)
    # Through the driver, not Django: this is no query of the code under test.
    cursor = wrapper.connection.cursor()
    try:
        cursor.execute(EXPIRE_SQL[wrapper.vendor])
    except Exception as exc:
        needs = (
            " (idle_session_timeout needs PostgreSQL 14)" if wrapper.vendor == "postgresql" else ""
        )
        raise FaultError(
            f"could not lower the idle limit of {wrapper.alias!r}'s session{needs}: "
            f"{first_line(exc)}"
        ) from exc
    finally:
        cursor.close()
    _await_close(fd, timeout, f"the idle session of {wrapper.alias!r}")
