"""Which driver errors mean "this connection is dead".

One table for every supported driver (mysqlclient, PyMySQL, psycopg 3,
psycopg2). Codes, SQLSTATEs and driver flags decide; message text is used only
for errors that carry no code at all.

A disconnect marks the connection dead at once, so it is replaced at its next
use outside a transaction. Anything else (a syntax error, a lock wait timeout,
``KILL QUERY``) leaves the connection alone.
"""

from __future__ import annotations

from typing import Any

# MySQL / MariaDB client (CR_*) and server (ER_*) error numbers.
MYSQL_DISCONNECT_CODES: dict[int, str] = {
    1053: "ER_SERVER_SHUTDOWN: server shutdown in progress",
    1927: "ER_CONNECTION_KILLED: connection was killed (MariaDB)",
    2006: "CR_SERVER_GONE_ERROR: server has gone away",
    2013: "CR_SERVER_LOST: lost connection during query",
    2014: "CR_COMMANDS_OUT_OF_SYNC: protocol out of sync",
    2045: "CR_SHARED_MEMORY_CONNECT_ABANDONED_ERROR",
    2055: "CR_SERVER_LOST_EXTENDED: lost connection, system error",
    4031: "ER_CLIENT_INTERACTION_TIMEOUT: idle past wait_timeout (MySQL 8.0.24+)",
}

# Only for MySQL errors without a numeric code, e.g. PyMySQL's Error("Already closed").
MYSQL_DISCONNECT_MESSAGES: tuple[str, ...] = (
    "already closed",
    "connection was killed",
    "lost connection to",
    "server has gone away",
)

# 57P01 admin_shutdown (pg_terminate_backend, fast shutdown), 57P02 crash_shutdown,
# 57P05 idle_session_timeout; 25P03 idle_in_transaction_session_timeout and
# 25P04 transaction_timeout arrive as InternalError, not OperationalError.
POSTGRESQL_DISCONNECT_SQLSTATES: frozenset[str] = frozenset(
    {"57P01", "57P02", "57P05", "25P03", "25P04"}
)
# Class 08: connection exceptions (08000, 08003, 08006, ...).
POSTGRESQL_DISCONNECT_SQLSTATE_CLASS = "08"

# libpq, OpenSSL and the drivers' own messages, for errors without a SQLSTATE.
POSTGRESQL_DISCONNECT_MESSAGES: tuple[str, ...] = (
    "server closed the connection unexpectedly",
    "ssl connection has been closed unexpectedly",
    "ssl syscall error",
    "ssl error: decryption failed or bad record mac",
    "ssl error: unexpected eof while reading",
    "could not receive data from server",
    "could not send data to server",
    "connection not open",
    "no connection to the server",
    "connection already closed",
    "the connection is closed",
    "the connection is lost",
    "connection is bad",
    "consuming input failed",
    "sending query failed",
    "flushing failed",
    "terminating connection",
)


# Disconnects that prove the failed statement never ran, so that even a write may
# be retried: the request could not be written (2006: mysqlclient when the
# socket is gone or the write fails, PyMySQL when the write fails), the client
# had no socket left (InterfaceError(0, '')), or the server had already closed
# the session for inactivity before the statement arrived (4031). 2013 ("lost
# connection during query") is not here: the statement may have run.
MYSQL_NEVER_EXECUTED_CODES: frozenset[int] = frozenset({2006, 4031})
MYSQL_NEVER_EXECUTED_MESSAGES: tuple[str, ...] = ("already closed",)

# 57P05: the session timed out while idle, so the statement that met the
# FATAL message was never run. The messages are the drivers' own refusals to
# send anything on a closed or busy connection, and libpq's failed send.
POSTGRESQL_NEVER_EXECUTED_SQLSTATES: frozenset[str] = frozenset({"57P05"})
POSTGRESQL_NEVER_EXECUTED_MESSAGES: tuple[str, ...] = (
    "sending query failed",
    "could not send data to server",
    "connection already closed",
    "the connection is closed",
    "connection is bad",
    "no connection to the server",
)


def _driver_error(exc: BaseException) -> BaseException:
    # Django re-raises driver errors as django.db.utils.* with the original as
    # __cause__; classify the original.
    if type(exc).__module__ == "django.db.utils" and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def is_mysql_disconnect(exc: BaseException) -> bool:
    """True if a mysqlclient or PyMySQL error means the connection is dead."""
    exc = _driver_error(exc)
    code = exc.args[0] if exc.args else None
    if isinstance(code, int) and not isinstance(code, bool):
        if code in MYSQL_DISCONNECT_CODES:
            return True
        # InterfaceError(0, ''): PyMySQL with no socket left, or mysqlclient
        # reporting a client error without a number.
        return code == 0 and type(exc).__name__ == "InterfaceError"
    message = str(exc).lower()
    return any(text in message for text in MYSQL_DISCONNECT_MESSAGES)


def _connection_flag(connection: Any) -> bool:
    if connection is None:
        return False
    # psycopg 3: ``broken`` (lost, not closed by us) and ``closed``;
    # psycopg2: ``closed`` is 1 after close(), 2 after a connection failure.
    return bool(getattr(connection, "broken", False) or getattr(connection, "closed", False))


def is_postgresql_disconnect(exc: BaseException, connection: Any = None) -> bool:
    """True if a psycopg or psycopg2 error means the connection is dead.

    ``connection`` is the driver connection the error came from, if known: its
    ``closed``/``broken`` flags are the most reliable signal once they are set.
    """
    exc = _driver_error(exc)
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if sqlstate:
        return (
            sqlstate in POSTGRESQL_DISCONNECT_SQLSTATES
            or sqlstate.startswith(POSTGRESQL_DISCONNECT_SQLSTATE_CLASS)
            or _connection_flag(connection)
        )
    if _connection_flag(connection):
        return True
    message = str(exc).lower()
    return any(text in message for text in POSTGRESQL_DISCONNECT_MESSAGES)


def is_disconnect(exc: BaseException, connection: Any = None) -> bool:
    """Classify an error from any supported driver, or Django's wrapper of one."""
    driver_exc = _driver_error(exc)
    module = type(driver_exc).__module__.split(".", 1)[0]
    if module in ("MySQLdb", "pymysql"):
        return is_mysql_disconnect(driver_exc)
    if module in ("psycopg", "psycopg2"):
        return is_postgresql_disconnect(driver_exc, connection)
    return False


def never_executed(exc: BaseException) -> bool:
    """True if a disconnect error proves that the failed statement never ran.

    Only meaningful for errors that :func:`is_disconnect` accepts.
    """
    driver_exc = _driver_error(exc)
    module = type(driver_exc).__module__.split(".", 1)[0]
    if module in ("MySQLdb", "pymysql"):
        code = driver_exc.args[0] if driver_exc.args else None
        if isinstance(code, int) and not isinstance(code, bool):
            return code in MYSQL_NEVER_EXECUTED_CODES or (
                code == 0 and type(driver_exc).__name__ == "InterfaceError"
            )
        message = str(driver_exc).lower()
        return any(text in message for text in MYSQL_NEVER_EXECUTED_MESSAGES)
    if module in ("psycopg", "psycopg2"):
        sqlstate = getattr(driver_exc, "sqlstate", None) or getattr(driver_exc, "pgcode", None)
        if sqlstate:
            return sqlstate in POSTGRESQL_NEVER_EXECUTED_SQLSTATES
        message = str(driver_exc).lower()
        return any(text in message for text in POSTGRESQL_NEVER_EXECUTED_MESSAGES)
    return False
