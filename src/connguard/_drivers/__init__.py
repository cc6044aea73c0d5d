"""What the guard needs from each DB-API driver, behind one small interface.

Each driver knows its own facts: which of its errors mean "this connection is
dead" (``is_disconnect``), which prove the failed statement never ran
(``never_executed``), how to ping, where the socket is, and the server's idle
limit. Codes, SQLSTATEs and driver flags decide; message text is used only for
errors that carry no code at all. ``connguard.disconnects`` is the public face
of the classification.

Everything here talks to the raw driver connection, never through Django's
cursor wrappers: a liveness check must not log queries, fire execute wrappers,
or be classified as the user's own error. Nothing here imports a driver: this
module loads with none installed.
"""

from __future__ import annotations

import sys
from typing import Any

from connguard._drivers.base import Driver, driver_error
from connguard._drivers.mysql import (
    MYSQL_DISCONNECT_CODES,
    MYSQL_DISCONNECT_MESSAGES,
    MYSQL_NEVER_EXECUTED_CODES,
    MYSQL_NEVER_EXECUTED_MESSAGES,
    MYSQL_READ_ONLY_CODES,
    MySQLClientDriver,
    MySQLDriver,
    PyMySQLDriver,
)
from connguard._drivers.postgresql import (
    POSTGRESQL_DISCONNECT_MESSAGES,
    POSTGRESQL_DISCONNECT_SQLSTATE_CLASS,
    POSTGRESQL_DISCONNECT_SQLSTATES,
    POSTGRESQL_NEVER_EXECUTED_MESSAGES,
    POSTGRESQL_NEVER_EXECUTED_SQLSTATES,
    POSTGRESQL_READ_ONLY_SQLSTATE,
    PostgreSQLDriver,
    Psycopg2Driver,
    PsycopgDriver,
    pg_time_setting,
)

__all__ = [
    "MYSQL_DISCONNECT_CODES",
    "MYSQL_DISCONNECT_MESSAGES",
    "MYSQL_NEVER_EXECUTED_CODES",
    "MYSQL_NEVER_EXECUTED_MESSAGES",
    "MYSQL_READ_ONLY_CODES",
    "POSTGRESQL_DISCONNECT_MESSAGES",
    "POSTGRESQL_DISCONNECT_SQLSTATES",
    "POSTGRESQL_DISCONNECT_SQLSTATE_CLASS",
    "POSTGRESQL_NEVER_EXECUTED_MESSAGES",
    "POSTGRESQL_NEVER_EXECUTED_SQLSTATES",
    "POSTGRESQL_READ_ONLY_SQLSTATE",
    "Driver",
    "MySQLClientDriver",
    "MySQLDriver",
    "PostgreSQLDriver",
    "Psycopg2Driver",
    "PsycopgDriver",
    "PyMySQLDriver",
    "driver_error",
    "driver_for",
    "driver_for_error",
    "pg_time_setting",
]


# PyMySQL before mysqlclient: pymysql.install_as_MySQLdb() makes
# sys.modules["MySQLdb"] the pymysql module, whose errors are PyMySQL's.
_DRIVERS: tuple[Driver, ...] = (
    PyMySQLDriver(),
    MySQLClientDriver(),
    PsycopgDriver(),
    Psycopg2Driver(),
)
_BY_MODULE = {driver.module: driver for driver in _DRIVERS}


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


def driver_for_error(exc: BaseException) -> Driver | None:
    """The driver whose error ``exc`` is (or Django's copy of), or None for any other error."""
    exc = driver_error(exc)
    for driver in _DRIVERS:
        for name in driver.error_modules:
            # Only modules already imported: no error can come from one that is
            # not, and importing it here would be slow or fail. None: a test run hid it.
            module = sys.modules.get(name)
            if module is not None and isinstance(exc, module.Error):
                return driver
    return None
