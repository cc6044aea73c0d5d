"""The ``Driver`` interface, and the one unwrapping of Django's copy of a driver error."""

from __future__ import annotations

import sys
from typing import Any


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own error behind Django's re-raised copy of it, else ``exc``."""
    # Django re-raises a driver error as the django.db.utils class of the same
    # name, chaining the original as __cause__. Only those very classes:
    # connguard's ConnectionLost subclasses them but is no driver's error. Not
    # imported here: while Django's module is not loaded, nothing is its wrapper.
    utils = sys.modules.get("django.db.utils")
    cls = type(exc)
    if utils is not None and getattr(utils, cls.__name__, None) is cls and exc.__cause__:
        return exc.__cause__
    return exc


def fetch_one(connection: Any, sql: str) -> Any:
    """One row of ``sql`` on a raw driver connection: no Django cursor, no query log."""
    cursor = connection.cursor()
    try:
        cursor.execute(sql)
        return cursor.fetchone()
    finally:
        cursor.close()


def _mentions(exc: BaseException, texts: tuple[str, ...]) -> bool:
    message = str(exc).lower()
    return any(text in message for text in texts)


class Driver:
    name = ""
    vendor = ""
    # The DB-API module, as it is imported: driver_for() knows a backend by it,
    # driver_for_error() an error by its Error class.
    module = ""
    # One query that returns the session's idle limit in seconds (0 = none) and,
    # where a second column is given, whether the node is read-only.
    server_idle_sql = ""
    # Matched against the lowercased text of errors that carry no code.
    disconnect_messages: tuple[str, ...] = ()
    never_executed_messages: tuple[str, ...] = ()

    @property
    def error_modules(self) -> tuple[str, ...]:
        """The modules whose ``Error`` class is the base of this driver's errors."""
        return (self.module,)

    def error_code(self, exc: BaseException) -> int | str | None:
        """The vendor's code in a driver error or Django's copy of one; None if it has none."""
        return None

    def is_disconnect(self, exc: BaseException, connection: Any = None) -> bool:
        """True if the error means the connection is dead."""
        exc = driver_error(exc)
        code = self.error_code(exc)
        if code is None:
            return _mentions(exc, self.disconnect_messages)
        # A code decides, even when the text looks like a disconnect.
        return self.disconnect_code(code, exc)

    def never_executed(self, exc: BaseException) -> bool:
        """True if a disconnect error proves that the failed statement never ran.

        Only meaningful for errors that :meth:`is_disconnect` accepts.
        """
        exc = driver_error(exc)
        code = self.error_code(exc)
        if code is None:
            return _mentions(exc, self.never_executed_messages)
        return self.never_executed_code(code, exc)

    def disconnect_code(self, code: int | str, exc: BaseException) -> bool:
        return False

    def never_executed_code(self, code: int | str, exc: BaseException) -> bool:
        return False

    def is_wrong_node(self, exc: BaseException, connection: Any = None) -> bool:
        """True if the server refused the statement because the node is read-only,
        and the application did not ask for that: on an alias meant to write,
        a failover's leftover. The statement never ran."""
        return False

    def connect_retryable(self, exc: BaseException) -> bool:
        """True if a failed connect may succeed soon: refused, starting up,
        shutting down, full. Not for a wrong password or an unknown database."""
        exc = driver_error(exc)
        code = self.error_code(exc)
        if code is None:
            return _mentions(exc, self.connect_retry_messages)
        return code in self.connect_retry_codes

    connect_retry_codes: frozenset[int | str] = frozenset()
    connect_retry_messages: tuple[str, ...] = ()

    def node_read_only(self, connection: Any) -> bool | None:
        """Whether the node is read-only, as far as the connection knows without a
        round trip (PostgreSQL's parameter status); None: not known."""
        return None

    def server_facts(self, connection: Any) -> tuple[float | None, bool | None]:
        """The session's idle limit and whether the node is read-only, in one round trip."""
        row = fetch_one(connection, self.server_idle_sql)
        limit = None
        if row is not None and row[0] is not None:
            seconds = self.seconds(row[0])
            limit = seconds if seconds > 0 else None
        read_only = bool(row[1]) if row is not None and len(row) > 1 else None
        return limit, self.node_read_only(connection) if read_only is None else read_only

    def address(self, connection: Any) -> str | None:
        """host:port of the server the connection reached, if the driver says."""
        return None

    def fileno(self, connection: Any) -> int | None:
        fd = connection.fileno()
        return int(fd) if fd is not None and fd >= 0 else None

    def ping(self, connection: Any) -> None:
        """One round trip; raise if the connection is dead."""
        raise NotImplementedError

    def seconds(self, value: Any) -> float:
        return float(value)
