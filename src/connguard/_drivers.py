"""What the guard needs from each DB-API driver, behind one small interface.

Everything here talks to the raw driver connection, never through Django's
cursor wrappers: a liveness check must not log queries, fire execute wrappers,
or be classified as the user's own error.
"""

from __future__ import annotations

from typing import Any

from connguard.disconnects import is_mysql_disconnect, is_postgresql_disconnect


class Driver:
    name = ""
    vendor = ""
    # One query that returns the session's idle limit in seconds (0 = none).
    server_idle_sql = ""

    def is_disconnect(self, exc: BaseException, connection: Any) -> bool:
        raise NotImplementedError

    def fileno(self, connection: Any) -> int | None:
        fd = connection.fileno()
        return int(fd) if fd is not None and fd >= 0 else None

    def ping(self, connection: Any) -> None:
        """One round trip; raise if the connection is dead."""
        raise NotImplementedError

    def server_idle_limit(self, connection: Any) -> float | None:
        cursor = connection.cursor()
        try:
            cursor.execute(self.server_idle_sql)
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row is None or row[0] is None:
            return None
        seconds = self.seconds(row[0])
        return seconds if seconds > 0 else None

    def seconds(self, value: Any) -> float:
        return float(value)


class MySQLDriver(Driver):
    vendor = "mysql"
    server_idle_sql = "SELECT @@session.wait_timeout"

    def is_disconnect(self, exc: BaseException, connection: Any) -> bool:
        return is_mysql_disconnect(exc)


class MySQLClientDriver(MySQLDriver):
    name = "mysqlclient"

    def ping(self, connection: Any) -> None:
        # COM_PING; mysqlclient never reconnects unless asked to.
        connection.ping()


class PyMySQLDriver(MySQLDriver):
    name = "pymysql"

    def fileno(self, connection: Any) -> int | None:
        sock = getattr(connection, "_sock", None)
        return None if sock is None else int(sock.fileno())

    def ping(self, connection: Any) -> None:
        # COM_PING; reconnect=False because a driver-level reconnect would skip
        # Django's session setup.
        connection.ping(reconnect=False)


class PostgreSQLDriver(Driver):
    vendor = "postgresql"
    # Not pg_settings, which builds every setting's row: on a new backend that
    # took 2.5 ms against 1 ms for this, and it runs at every connect. NULL
    # (missing_ok) before PostgreSQL 14, which has no idle_session_timeout.
    server_idle_sql = "SELECT current_setting('idle_session_timeout', true)"

    def is_disconnect(self, exc: BaseException, connection: Any) -> bool:
        return is_postgresql_disconnect(exc, connection)

    def seconds(self, value: Any) -> float:
        return pg_time_setting(str(value))


class PsycopgDriver(PostgreSQLDriver):
    name = "psycopg"

    def ping(self, connection: Any) -> None:
        # An empty query: the cheapest full round trip (what psycopg_pool does).
        connection.execute("")


class Psycopg2Driver(PostgreSQLDriver):
    name = "psycopg2"

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


_BY_MODULE: dict[str, Driver] = {
    "MySQLdb": MySQLClientDriver(),
    "pymysql": PyMySQLDriver(),
    "psycopg": PsycopgDriver(),
    "psycopg2": Psycopg2Driver(),
}


def driver_for(database_module: Any) -> Driver:
    """The driver behind a backend's ``Database`` module.

    ``pymysql.install_as_MySQLdb()`` makes Django's ``Database`` the pymysql
    module itself, so the module's own name tells the drivers apart.
    """
    name = database_module.__name__.split(".", 1)[0]
    try:
        return _BY_MODULE[name]
    except KeyError:
        raise LookupError(f"connguard does not support the {name!r} driver") from None
