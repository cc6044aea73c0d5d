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
        seconds = float(row[0])
        return seconds if seconds > 0 else None


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
    # pg_settings gives idle_session_timeout in ms; PostgreSQL < 14 has no row.
    server_idle_sql = (
        "SELECT setting::float8 / 1000 FROM pg_settings WHERE name = 'idle_session_timeout'"
    )

    def is_disconnect(self, exc: BaseException, connection: Any) -> bool:
        return is_postgresql_disconnect(exc, connection)


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
