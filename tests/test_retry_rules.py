"""The retry rules as pure logic: read-only detection and "never executed" errors."""

from __future__ import annotations

import pymysql
import pytest

try:
    from psycopg import Error as PGDriverError
except ImportError:  # hidden in the psycopg2 runs (tests/settings.py)
    from psycopg2 import Error as PGDriverError

import connguard
from connguard._sql import is_read_only
from connguard.db.backends.base.decisions import retry
from connguard.db.backends.base.state import GuardState
from connguard.disconnects import never_executed
from connguard.exceptions import EXECUTEMANY_REFUSAL, ConnectionLost, OutcomeUnknown


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  select id, name from app_book where id = %s",
        'SELECT "app_book"."id", COUNT("app_book"."id") AS "n" FROM "app_book" GROUP BY 1',
        "SELECT `a`.`id` FROM `a` WHERE `a`.`x` IN (SELECT `b`.`y` FROM `b`) LIMIT 21",
        "(SELECT 1) UNION (SELECT 2)",
        "SELECT COALESCE(MAX(id), 0), LOWER(name) FROM t",
        "SHOW TABLES",
        "EXPLAIN SELECT * FROM t",
        "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM t",
        "VALUES (1), (2)",
        "TABLE t",
        "SELECT 'for update; delete from t' FROM t",  # inside a string
        "SELECT 1 /* FOR UPDATE */",  # inside a comment
        "SELECT 1;",
        "SELECT SLEEP(1)",
        "SELECT pg_sleep(1)",
    ],
)
def test_read_only(sql: str) -> None:
    assert is_read_only(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET x = 1",
        "DELETE FROM t",
        "REPLACE INTO t VALUES (1)",
        "CALL proc()",
        "SET SESSION wait_timeout = 1",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t FOR NO KEY UPDATE",
        "SELECT * FROM t FOR SHARE",
        "SELECT * FROM t LOCK IN SHARE MODE",
        "SELECT * INTO new_table FROM t",
        "SELECT id INTO OUTFILE '/tmp/x' FROM t",
        "SELECT nextval('seq')",
        "SELECT pg_advisory_lock(1)",
        "SELECT GET_LOCK('x', 1)",
        "SELECT my_function(1)",  # user-defined: may write
        'SELECT "my_function"(1)',
        "SELECT 1; DELETE FROM t",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "EXPLAIN ANALYZE DELETE FROM t",
        "",
        "   ",
    ],
)
def test_not_read_only(sql: str) -> None:
    assert not is_read_only(sql)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (pymysql.err.OperationalError(2006, "MySQL server has gone away"), True),
        (pymysql.err.OperationalError(4031, "disconnected for inactivity"), True),
        (pymysql.err.InterfaceError(0, ""), True),
        (pymysql.err.Error("Already closed"), True),
        (pymysql.err.OperationalError(2013, "Lost connection during query"), False),
        (pymysql.err.OperationalError(1927, "Connection was killed"), False),
        (pymysql.err.OperationalError(1053, "Server shutdown in progress"), False),
    ],
)
def test_mysql_never_executed(exc: Exception, expected: bool) -> None:
    assert never_executed(exc) is expected


class _PGError(PGDriverError):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_PGError("terminating connection due to idle-session timeout", "57P05"), True),
        (_PGError("sending query failed: another command is already in progress"), True),
        (_PGError("the connection is closed"), True),
        (_PGError("connection already closed"), True),
        (_PGError("could not send data to server: Broken pipe"), True),
        (_PGError("terminating connection due to administrator command", "57P01"), False),
        (_PGError("consuming input failed: server closed the connection unexpectedly"), False),
        (_PGError("server closed the connection unexpectedly"), False),
    ],
)
def test_postgresql_never_executed(exc: Exception, expected: bool) -> None:
    assert never_executed(exc) is expected


def test_never_executed_unknown_driver() -> None:
    assert not never_executed(ValueError("the connection is closed"))


LOST = pymysql.err.OperationalError(2013, "Lost connection during query")
UNSENT = pymysql.err.OperationalError(2006, "MySQL server has gone away")


def retry_verdict(cause: BaseException, sql: object, many: bool) -> object:
    """decisions.retry() for a statement lost outside a transaction with ``cause``."""
    lost = ConnectionLost(*cause.args)
    lost.__cause__ = cause
    return retry(lost, GuardState(), sql, many, never_executed(cause))


def test_rules() -> None:
    unknown = (False, OutcomeUnknown.default_reason)
    assert retry_verdict(LOST, "SELECT 1", many=False) == (True, "read_only")
    assert retry_verdict(LOST, "UPDATE t SET x = 1", many=False) == unknown
    assert retry_verdict(UNSENT, "UPDATE t SET x = 1", many=False) == (True, "never_executed")
    assert retry_verdict(UNSENT, "INSERT INTO t VALUES (%s)", many=True) == (
        False,
        EXECUTEMANY_REFUSAL,
    )
    assert retry_verdict(LOST, object(), many=False) == unknown
    with connguard.idempotent():
        assert retry_verdict(LOST, "UPDATE t SET x = 1", many=False) == (True, "idempotent")
        assert retry_verdict(LOST, "INSERT INTO t VALUES (%s)", many=True) == (True, "idempotent")
    assert retry_verdict(LOST, "UPDATE t SET x = 1", many=False) == unknown


def test_idempotent_is_a_decorator_too() -> None:
    @connguard.idempotent()
    def work() -> object:
        return retry_verdict(LOST, "UPDATE t SET x = 1", many=False)

    assert work() == (True, "idempotent")
    assert work() == (True, "idempotent")  # reusable
    assert retry_verdict(LOST, "UPDATE t SET x = 1", many=False) == (
        False,
        OutcomeUnknown.default_reason,
    )
