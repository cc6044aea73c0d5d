"""psycopg 3 and psycopg2: PostgreSQL's facts."""

from __future__ import annotations

from typing import Any

from connguard._drivers.base import Driver, driver_error

# ##### PostgreSQL facts #####

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


# 25006 read_only_sql_transaction: a write on a hot standby, or on a primary
# whose default_transaction_read_only is on. The server refused the statement.
POSTGRESQL_READ_ONLY_SQLSTATE = "25006"

# Connects that may succeed soon: 57P03 cannot_connect_now (starting up,
# shutting down, in recovery), 53300 too_many_connections, 08 connection
# exceptions; libpq's refusals, which carry no SQLSTATE.
POSTGRESQL_CONNECT_RETRY_SQLSTATES: frozenset[str] = frozenset(
    {"57P03", "53300", "08000", "08001", "08006"}
)
POSTGRESQL_CONNECT_RETRY_MESSAGES: tuple[str, ...] = (
    "connection refused",
    "could not connect to server",
    "server closed the connection unexpectedly",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "sorry, too many clients already",
    "no such file or directory",  # a Unix socket not there yet
)


def _parameter(connection: Any, name: str) -> str | None:
    """A parameter the server reports (ParameterStatus), read without a round trip."""
    info = getattr(connection, "info", None)
    getter = getattr(info, "parameter_status", None) or getattr(
        connection, "get_parameter_status", None
    )
    if getter is None:
        return None
    value = getter(name)
    return value.decode() if isinstance(value, bytes) else value


def _connection_flag(connection: Any) -> bool:
    if connection is None:
        return False
    # psycopg 3: ``broken`` (lost, not closed by us) and ``closed``;
    # psycopg2: ``closed`` is 1 after close(), 2 after a connection failure.
    return bool(getattr(connection, "broken", False) or getattr(connection, "closed", False))


class PostgreSQLDriver(Driver):
    vendor = "postgresql"
    # Not pg_settings, which builds every setting's row: on a new backend that
    # took 2.5 ms against 1 ms for this, and it runs at every connect. NULL
    # (missing_ok) before PostgreSQL 14, which has no idle_session_timeout.
    server_idle_sql = "SELECT current_setting('idle_session_timeout', true)"
    disconnect_messages = POSTGRESQL_DISCONNECT_MESSAGES
    never_executed_messages = POSTGRESQL_NEVER_EXECUTED_MESSAGES

    def error_code(self, exc: BaseException) -> str | None:
        exc = driver_error(exc)
        # psycopg 3 calls the SQLSTATE sqlstate, psycopg2 pgcode; both are
        # None for the drivers' own errors, which no server sent.
        state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        return str(state) if state else None

    def is_disconnect(self, exc: BaseException, connection: Any = None) -> bool:
        # The flags of the connection the error came from (if known) are the
        # most reliable signal once set: they outrank any code or text.
        return _connection_flag(connection) or super().is_disconnect(exc, connection)

    def disconnect_code(self, code: int | str, exc: BaseException) -> bool:
        return code in POSTGRESQL_DISCONNECT_SQLSTATES or str(code).startswith(
            POSTGRESQL_DISCONNECT_SQLSTATE_CLASS
        )

    def never_executed_code(self, code: int | str, exc: BaseException) -> bool:
        return code in POSTGRESQL_NEVER_EXECUTED_SQLSTATES or code == POSTGRESQL_READ_ONLY_SQLSTATE

    connect_retry_codes = frozenset(POSTGRESQL_CONNECT_RETRY_SQLSTATES)
    connect_retry_messages = POSTGRESQL_CONNECT_RETRY_MESSAGES

    def is_wrong_node(self, exc: BaseException, connection: Any = None) -> bool:
        # A read-only transaction the application asked for (SET TRANSACTION
        # READ ONLY, the driver's read_only session flag) refuses writes with the
        # same 25006: only a node that reports itself read-only is the wrong node.
        if self.error_code(exc) != POSTGRESQL_READ_ONLY_SQLSTATE or connection is None:
            return False
        asked = getattr(connection, "read_only", None) or getattr(connection, "readonly", None)
        return not asked and bool(self.node_read_only(connection))

    def node_read_only(self, connection: Any) -> bool | None:
        # PostgreSQL 14+ reports both at connect and whenever they change
        # (GUC_REPORT): a standby, or a primary made read-only.
        standby = _parameter(connection, "in_hot_standby")
        default = _parameter(connection, "default_transaction_read_only")
        if standby is None and default is None:
            return None
        return "on" in (standby, default)

    def address(self, connection: Any) -> str | None:
        info = getattr(connection, "info", None)
        host, port = getattr(info, "host", None), getattr(info, "port", None)
        return f"{host}:{port}" if host else None

    def seconds(self, value: Any) -> float:
        return pg_time_setting(str(value))


class PsycopgDriver(PostgreSQLDriver):
    name = "psycopg"
    module = "psycopg"

    def ping(self, connection: Any) -> None:
        # An empty query: the cheapest full round trip (what psycopg_pool does).
        connection.execute("")


class Psycopg2Driver(PostgreSQLDriver):
    name = "psycopg2"
    module = "psycopg2"

    def ping(self, connection: Any) -> None:
        # psycopg2 refuses an empty query client-side, so send the smallest real one.
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")


# How PostgreSQL shows a time setting: a number and the largest unit that
# divides it ("0", "1500ms", "1s", "90min", "1d"); no unit means milliseconds,
# idle_session_timeout's own.
_PG_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def pg_time_setting(text: str) -> float:
    """Seconds in a millisecond-based time setting as ``current_setting()`` shows it."""
    text = text.strip()
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number) :] or "ms"
    try:
        return float(number) * _PG_TIME_UNITS[unit]
    except (KeyError, ValueError):
        raise ValueError(f"not a PostgreSQL time setting: {text!r}") from None
