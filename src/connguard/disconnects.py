"""Which driver errors mean "this connection is dead".

One set of rules per vendor, for every supported driver (mysqlclient, PyMySQL,
psycopg 3, psycopg2): the tables and the logic live on the drivers in
``connguard._drivers``, and are re-exported here. Codes, SQLSTATEs and driver
flags decide; message text is used only for errors that carry no code at all.

A disconnect marks the connection dead at once, so it is replaced at its next
use outside a transaction. Anything else (a syntax error, a lock wait timeout,
``KILL QUERY``) leaves the connection alone.

A node that refuses writes because it is read-only (``is_wrong_node()``:
MySQL 1290 about read-only, 1836, Galera's 1047; PostgreSQL 25006 on a node
that reports itself read-only) is, on an alias meant to write, a disconnect of
its own kind: a failover's leftover, and the statement never ran.
"""

from __future__ import annotations

from typing import Any

from connguard._drivers import (
    MYSQL_DISCONNECT_CODES,
    MYSQL_DISCONNECT_MESSAGES,
    MYSQL_NEVER_EXECUTED_CODES,
    MYSQL_NEVER_EXECUTED_MESSAGES,
    MYSQL_READ_ONLY_CODES,
    POSTGRESQL_DISCONNECT_MESSAGES,
    POSTGRESQL_DISCONNECT_SQLSTATE_CLASS,
    POSTGRESQL_DISCONNECT_SQLSTATES,
    POSTGRESQL_NEVER_EXECUTED_MESSAGES,
    POSTGRESQL_NEVER_EXECUTED_SQLSTATES,
    POSTGRESQL_READ_ONLY_SQLSTATE,
    MySQLDriver,
    PostgreSQLDriver,
    driver_for_error,
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
    "is_disconnect",
    "is_mysql_disconnect",
    "is_postgresql_disconnect",
    "is_wrong_node",
    "never_executed",
]

# The vendors' rules, for callers that know the vendor but not the driver: both
# MySQL drivers (and both PostgreSQL drivers) share them.
_MYSQL = MySQLDriver()
_POSTGRESQL = PostgreSQLDriver()


def is_mysql_disconnect(exc: BaseException) -> bool:
    """True if a mysqlclient or PyMySQL error means the connection is dead."""
    return _MYSQL.is_disconnect(exc)


def is_postgresql_disconnect(exc: BaseException, connection: Any = None) -> bool:
    """True if a psycopg or psycopg2 error means the connection is dead.

    ``connection`` is the driver connection the error came from, if known: its
    ``closed``/``broken`` flags are the most reliable signal once they are set.
    """
    return _POSTGRESQL.is_disconnect(exc, connection)


def is_disconnect(exc: BaseException, connection: Any = None) -> bool:
    """Classify an error from any supported driver, or Django's wrapper of one."""
    driver = driver_for_error(exc)
    return driver is not None and driver.is_disconnect(exc, connection)


def never_executed(exc: BaseException) -> bool:
    """True if a disconnect error proves that the failed statement never ran.

    Only meaningful for errors that :func:`is_disconnect` accepts.
    """
    driver = driver_for_error(exc)
    return driver is not None and driver.never_executed(exc)


def is_wrong_node(exc: BaseException, connection: Any = None) -> bool:
    """True if the server refused the statement because the node is read-only.

    ``connection`` (PostgreSQL): the driver connection the error came from, whose
    reported parameters tell a read-only node from a read-only transaction the
    application asked for; without it, a 25006 is never the wrong node.
    """
    driver = driver_for_error(exc)
    return driver is not None and driver.is_wrong_node(exc, connection)
