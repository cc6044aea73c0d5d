"""Which refusals mean "this node is read-only": on an alias meant to write, a failover's leftover.

Each entry of the tables, and each look-alike that must not match. Pure: the
driver errors and connections are built by hand.
"""

from __future__ import annotations

from typing import Any

import pymysql
import pytest
from django.db import utils as django_errors

from connguard.disconnects import (
    MYSQL_READ_ONLY_CODES,
    POSTGRESQL_READ_ONLY_SQLSTATE,
    is_disconnect,
    is_wrong_node,
    never_executed,
)
from tests.test_disconnects import _PGError  # a real driver error with any SQLSTATE

SO = "so it cannot execute this statement"
MYSQL_READ_ONLY = [
    (1290, f"The MariaDB server is running with the --read-only option {SO}"),
    (1290, f"The MySQL server is running with the --super-read-only option {SO}"),
    (1290, f"The MySQL server is running with the READ_ONLY option {SO}"),
    (1836, "Running in read-only mode"),
    (1047, "WSREP has not yet prepared node for application use"),
]
MYSQL_LOOK_ALIKES = [
    (1290, f"The MySQL server is running with the --secure-file-priv option {SO}"),
    (1290, f"The MariaDB server is running with the --skip-grant-tables option {SO}"),
    (1047, "Unknown command"),
    (1792, "Cannot execute statement in a READ ONLY transaction."),  # START TRANSACTION READ ONLY
    (1142, "INSERT command denied to user 'app'@'localhost' for table 't'"),
]


@pytest.mark.parametrize(("code", "message"), MYSQL_READ_ONLY)
def test_mysql_read_only_refusals(code: int, message: str) -> None:
    for exc in (
        pymysql.err.OperationalError(code, message),
        pymysql.err.InternalError(code, message),
    ):
        assert is_wrong_node(exc)
        assert never_executed(exc)  # refused: the statement never ran
        assert not is_disconnect(exc)  # the connection itself is fine
    wrapped = django_errors.OperationalError(code, message)
    wrapped.__cause__ = pymysql.err.OperationalError(code, message)
    assert is_wrong_node(wrapped)


@pytest.mark.parametrize(("code", "message"), MYSQL_LOOK_ALIKES)
def test_mysql_look_alikes_are_not_read_only_nodes(code: int, message: str) -> None:
    exc = pymysql.err.OperationalError(code, message)
    assert not is_wrong_node(exc)
    assert not never_executed(exc)


def test_every_mysql_code_is_tested() -> None:
    assert {code for code, _ in MYSQL_READ_ONLY} == set(MYSQL_READ_ONLY_CODES)


class _Info:
    def __init__(self, parameters: dict[str, str]) -> None:
        self.parameters = parameters

    def parameter_status(self, name: str) -> str | None:
        return self.parameters.get(name)


class _Connection:
    """What the PostgreSQL rules read of a driver connection: its reported parameters
    and the session's read-only flag (psycopg 3 ``read_only``, psycopg2 ``readonly``)."""

    broken = closed = False

    def __init__(self, flag: str | None = None, **parameters: str) -> None:
        self.info = _Info(parameters)
        self.read_only = flag == "read_only"
        self.readonly = flag == "readonly"


REFUSED = _PGError(
    "cannot execute INSERT in a read-only transaction", POSTGRESQL_READ_ONLY_SQLSTATE
)


@pytest.mark.parametrize(
    "connection",
    [
        _Connection(in_hot_standby="on", default_transaction_read_only="off"),  # a standby
        _Connection(in_hot_standby="off", default_transaction_read_only="on"),  # a demoted primary
    ],
)
def test_postgresql_read_only_node(connection: Any) -> None:
    assert POSTGRESQL_READ_ONLY_SQLSTATE == "25006"
    assert is_wrong_node(REFUSED, connection)
    assert never_executed(REFUSED)
    assert not is_disconnect(REFUSED, connection)


@pytest.mark.parametrize(
    "connection",
    [
        # SET TRANSACTION READ ONLY on a writable node: the application asked.
        _Connection(in_hot_standby="off", default_transaction_read_only="off"),
        # The driver's read-only session flag, which the application set.
        _Connection("read_only", in_hot_standby="off", default_transaction_read_only="on"),
        _Connection("readonly", in_hot_standby="off", default_transaction_read_only="on"),
        _Connection(),  # before PostgreSQL 14: nothing reported, so not known
        None,  # the connection it came from is not known
    ],
)
def test_postgresql_read_only_transaction_the_application_asked_for(connection: Any) -> None:
    assert not is_wrong_node(REFUSED, connection)


@pytest.mark.parametrize(
    ("message", "sqlstate"),
    [
        ("permission denied for table t", "42501"),
        ("cannot execute INSERT in a read-only transaction", "25001"),  # active_sql_transaction
        ("read-only transaction", None),  # a message without its SQLSTATE decides nothing
    ],
)
def test_postgresql_look_alikes(message: str, sqlstate: str | None) -> None:
    standby = _Connection(in_hot_standby="on", default_transaction_read_only="on")
    assert not is_wrong_node(_PGError(message, sqlstate), standby)
