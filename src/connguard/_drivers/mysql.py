"""mysqlclient and PyMySQL: MySQL's and MariaDB's facts."""

from __future__ import annotations

from typing import Any

from connguard._drivers.base import Driver, driver_error

# ##### MySQL / MariaDB facts #####

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

# Disconnects that prove the failed statement never ran, so that even a write may
# be retried: the request could not be written (2006: mysqlclient when the
# socket is gone or the write fails, PyMySQL when the write fails), the client
# had no socket left (InterfaceError(0, '')), or the server had already closed
# the session for inactivity before the statement arrived (4031). 2013 ("lost
# connection during query") is not here: the statement may have run.
MYSQL_NEVER_EXECUTED_CODES: frozenset[int] = frozenset({2006, 4031})
MYSQL_NEVER_EXECUTED_MESSAGES: tuple[str, ...] = ("already closed",)


class MySQLDriver(Driver):
    vendor = "mysql"
    server_idle_sql = "SELECT @@session.wait_timeout"
    disconnect_messages = MYSQL_DISCONNECT_MESSAGES
    never_executed_messages = MYSQL_NEVER_EXECUTED_MESSAGES

    def error_code(self, exc: BaseException) -> int | None:
        exc = driver_error(exc)
        code = exc.args[0] if exc.args else None
        # Both drivers put the error number first; a bool is an int, but no number.
        return code if isinstance(code, int) and not isinstance(code, bool) else None

    def disconnect_code(self, code: int | str, exc: BaseException) -> bool:
        return code in MYSQL_DISCONNECT_CODES or self._no_socket(code, exc)

    def never_executed_code(self, code: int | str, exc: BaseException) -> bool:
        return code in MYSQL_NEVER_EXECUTED_CODES or self._no_socket(code, exc)

    @staticmethod
    def _no_socket(code: int | str, exc: BaseException) -> bool:
        # InterfaceError(0, ''): PyMySQL with no socket left, or mysqlclient
        # reporting a client error without a number. Both drivers name it so.
        return code == 0 and type(exc).__name__ == "InterfaceError"


class MySQLClientDriver(MySQLDriver):
    name = "mysqlclient"
    module = "MySQLdb"

    def ping(self, connection: Any) -> None:
        # COM_PING; mysqlclient never reconnects unless asked to.
        connection.ping()


class PyMySQLDriver(MySQLDriver):
    name = "pymysql"
    module = "pymysql"
    # pymysql.install_as_MySQLdb() aliases the package, so Django's
    # ``from MySQLdb.converters import ...`` loads pymysql/err.py once more, as
    # MySQLdb.err, with classes of its own (and pymysql.err names that copy).
    error_modules = ("pymysql", "MySQLdb.err")

    def fileno(self, connection: Any) -> int | None:
        sock = getattr(connection, "_sock", None)
        return None if sock is None else int(sock.fileno())

    def ping(self, connection: Any) -> None:
        # COM_PING; reconnect=False because a driver-level reconnect would skip
        # Django's session setup.
        connection.ping(reconnect=False)
