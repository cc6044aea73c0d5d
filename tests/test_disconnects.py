"""Every entry of the disconnect table, and its near misses."""

from __future__ import annotations

import importlib

import pymysql
import pytest
from django.db import utils as django_errors

try:
    from psycopg import Error as PGDriverError
except ImportError:  # hidden in the psycopg2 runs (tests/settings.py)
    from psycopg2 import Error as PGDriverError

from connguard.disconnects import (
    MYSQL_DISCONNECT_CODES,
    POSTGRESQL_DISCONNECT_MESSAGES,
    POSTGRESQL_DISCONNECT_SQLSTATES,
    is_disconnect,
    is_mysql_disconnect,
    is_postgresql_disconnect,
)


def _mysqlclient_errors():
    module = importlib.import_module("MySQLdb")
    if module.__name__ != "MySQLdb":  # pymysql.install_as_MySQLdb() in this process
        pytest.skip("mysqlclient is replaced by PyMySQL in this run")
    return importlib.import_module("MySQLdb._exceptions")


# ##### MySQL / MariaDB #####


@pytest.mark.parametrize("code", sorted(MYSQL_DISCONNECT_CODES))
def test_pymysql_disconnect_codes(code: int) -> None:
    assert is_mysql_disconnect(pymysql.err.OperationalError(code, "whatever"))


@pytest.mark.parametrize("code", sorted(MYSQL_DISCONNECT_CODES))
def test_mysqlclient_disconnect_codes(code: int) -> None:
    errors = _mysqlclient_errors()
    assert is_mysql_disconnect(errors.OperationalError(code, "whatever"))


def test_mysqlclient_commands_out_of_sync_is_a_programming_error() -> None:
    errors = _mysqlclient_errors()
    exc = errors.ProgrammingError(2014, "Commands out of sync; you can't run this command now")
    assert is_mysql_disconnect(exc)


@pytest.mark.parametrize(
    "exc",
    [
        pymysql.err.InterfaceError(0, ""),
        pymysql.err.Error("Already closed"),
        pymysql.err.OperationalError("Lost connection to server during query"),
        pymysql.err.OperationalError("Server has gone away"),  # libmariadb's wording
    ],
    ids=["interface-0", "already-closed", "lost-text", "gone-away-text"],
)
def test_mysql_disconnects_without_code(exc: Exception) -> None:
    assert is_mysql_disconnect(exc)


@pytest.mark.parametrize(
    "exc",
    [
        pymysql.err.OperationalError(1317, "Query execution was interrupted"),  # KILL QUERY
        pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"),
        pymysql.err.OperationalError(2003, "Can't connect to MySQL server"),
        pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax"),
        pymysql.err.IntegrityError(1062, "Duplicate entry"),
        # A code decides: a matching text never overrides a non-disconnect code.
        pymysql.err.OperationalError(1205, "lost connection to the lock manager"),
        pymysql.err.OperationalError(0, ""),
        pymysql.err.Error("something else"),
    ],
    ids=["kill-query", "lock-wait", "connect", "syntax", "duplicate", "code-wins", "op-0", "other"],
)
def test_mysql_non_disconnects(exc: Exception) -> None:
    assert not is_mysql_disconnect(exc)


def test_django_wrapped_errors_are_classified_by_cause() -> None:
    driver = pymysql.err.OperationalError(2006, "MySQL server has gone away")
    wrapped = django_errors.OperationalError(*driver.args)
    wrapped.__cause__ = driver
    assert is_disconnect(wrapped)
    assert not is_disconnect(django_errors.OperationalError("no cause"))


# ##### PostgreSQL #####


class _PGError(PGDriverError):
    """A real driver error with any SQLSTATE, for the table tests.

    psycopg2 sets pgcode from C only, hence the property.
    """

    def __init__(self, message: str, pgcode: str | None = None) -> None:
        super().__init__(message)
        self._pgcode = pgcode

    @property
    def pgcode(self) -> str | None:
        return self._pgcode


class _Conn:
    def __init__(self, closed: int = 0, broken: bool = False) -> None:
        self.closed = closed
        self.broken = broken


@pytest.mark.parametrize(
    "sqlstate", [*sorted(POSTGRESQL_DISCONNECT_SQLSTATES), "08000", "08003", "08006"]
)
def test_postgresql_sqlstates(sqlstate: str) -> None:
    assert is_postgresql_disconnect(_PGError("x", sqlstate))
    assert is_disconnect(_PGError("x", sqlstate))


@pytest.mark.parametrize("message", POSTGRESQL_DISCONNECT_MESSAGES)
def test_postgresql_messages_without_sqlstate(message: str) -> None:
    assert is_postgresql_disconnect(_PGError(f"prefix: {message.upper()}\n\tdetail"))


@pytest.mark.parametrize(
    "exc",
    [
        _PGError("relation does not exist", "42P01"),
        _PGError("canceling statement due to statement timeout", "57014"),
        _PGError("deadlock detected", "40P01"),
        # A SQLSTATE decides, even when the text looks like a disconnect.
        _PGError("terminating connection pool job", "XX000"),
        _PGError("cursor already closed"),
    ],
    ids=["undefined-table", "statement-timeout", "deadlock", "sqlstate-wins", "cursor-closed"],
)
def test_postgresql_non_disconnects(exc: Exception) -> None:
    assert not is_postgresql_disconnect(exc, _Conn())


@pytest.mark.parametrize("conn", [_Conn(closed=2), _Conn(closed=1), _Conn(broken=True)])
def test_postgresql_connection_flags(conn: _Conn) -> None:
    assert is_postgresql_disconnect(_PGError("anything"), conn)
    assert is_postgresql_disconnect(_PGError("anything", "42P01"), conn)


def test_psycopg3_real_error_classes() -> None:
    try:
        errors = importlib.import_module("psycopg.errors")
    except ImportError:
        pytest.skip("psycopg 3 is hidden in this run")
    for sqlstate in POSTGRESQL_DISCONNECT_SQLSTATES:
        assert is_disconnect(errors.lookup(sqlstate)("x")), sqlstate
    assert is_disconnect(errors.OperationalError("consuming input failed: EOF"))
    assert not is_disconnect(errors.lookup("42P01")("x"))
    # 25P03 arrives as InternalError, not OperationalError.
    assert issubclass(errors.lookup("25P03"), errors.InternalError)


def test_psycopg2_real_error_classes() -> None:
    psycopg2 = pytest.importorskip("psycopg2")
    assert is_disconnect(psycopg2.InterfaceError("connection already closed"))
    assert is_disconnect(psycopg2.OperationalError("server closed the connection unexpectedly"))
    assert not is_disconnect(psycopg2.ProgrammingError("syntax error"))


def test_unknown_drivers_are_never_disconnects() -> None:
    assert not is_disconnect(ValueError("server has gone away"))
