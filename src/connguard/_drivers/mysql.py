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

# A node that refuses writes: a failover's leftover on an alias meant to write.
# Each refuses the statement before it runs. 1290 (ER_OPTION_PREVENTS_STATEMENT)
# is also --secure-file-priv, --skip-grant-tables and others, so only with a
# read-only option in its message; 1047 (ER_UNKNOWN_COM_ERROR) is also "Unknown
# command", so only from Galera (WSREP).
MYSQL_READ_ONLY_CODES: dict[int, tuple[str, ...]] = {
    1290: ("--read-only", "--super-read-only", "read-only option", "read_only option"),
    1836: (),  # ER_READ_ONLY_MODE: "Running in read-only mode"
    1047: ("wsrep",),  # "WSREP has not yet prepared node for application use"
}

# Connects that may succeed soon: refused or unreachable (2002, 2003), lost in
# the handshake (2013), a server shutting down (1053) or full (1040, 1203).
MYSQL_CONNECT_RETRY_CODES: frozenset[int] = frozenset({1040, 1053, 1203, 2002, 2003, 2006, 2013})


class MySQLDriver(Driver):
    vendor = "mysql"
    # Both read_only and innodb_read_only refuse writes (read_only only a
    # non-SUPER user's: the check cannot tell, so it says what the node is).
    server_idle_sql = (
        "SELECT @@session.wait_timeout, @@global.read_only OR @@global.innodb_read_only"
    )
    disconnect_messages = MYSQL_DISCONNECT_MESSAGES
    never_executed_messages = MYSQL_NEVER_EXECUTED_MESSAGES
    connect_retry_codes = frozenset(MYSQL_CONNECT_RETRY_CODES)

    def error_code(self, exc: BaseException) -> int | None:
        exc = driver_error(exc)
        code = exc.args[0] if exc.args else None
        # Both drivers put the error number first; a bool is an int, but no number.
        return code if isinstance(code, int) and not isinstance(code, bool) else None

    def disconnect_code(self, code: int | str, exc: BaseException) -> bool:
        return code in MYSQL_DISCONNECT_CODES or self._no_socket(code, exc)

    def never_executed_code(self, code: int | str, exc: BaseException) -> bool:
        return (
            code in MYSQL_NEVER_EXECUTED_CODES
            or self._no_socket(code, exc)
            or self._read_only_refusal(code, exc)
        )

    def is_wrong_node(self, exc: BaseException, connection: Any = None) -> bool:
        exc = driver_error(exc)
        code = self.error_code(exc)
        return code is not None and self._read_only_refusal(code, exc)

    @staticmethod
    def _read_only_refusal(code: int | str, exc: BaseException) -> bool:
        texts = MYSQL_READ_ONLY_CODES.get(code) if isinstance(code, int) else None
        if texts is None:
            return False
        message = str(exc).lower()
        return not texts or any(text in message for text in texts)

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

    def address(self, connection: Any) -> str | None:
        host, port = getattr(connection, "host", None), getattr(connection, "port", None)
        return f"{host}:{port}" if host else None

    def ping(self, connection: Any) -> None:
        # COM_PING; reconnect=False because a driver-level reconnect would skip
        # Django's session setup.
        connection.ping(reconnect=False)
