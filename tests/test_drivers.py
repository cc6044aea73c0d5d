"""Pure logic in connguard._drivers: each driver's error facts, and reading
PostgreSQL's time settings.

The real-server side (the value each server reports, read at connect, and the
errors a real disconnect raises) is in tests/backends/.
"""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType
from typing import Any

import pymysql
import pytest
from django.db import utils as django_errors

from connguard._drivers import (
    MYSQL_DISCONNECT_CODES,
    MYSQL_NEVER_EXECUTED_CODES,
    POSTGRESQL_DISCONNECT_MESSAGES,
    POSTGRESQL_DISCONNECT_SQLSTATES,
    POSTGRESQL_NEVER_EXECUTED_MESSAGES,
    driver_for,
    driver_for_error,
    pg_time_setting,
)
from connguard.disconnects import (
    is_disconnect,
    is_mysql_disconnect,
    is_postgresql_disconnect,
    never_executed,
)
from connguard.exceptions import ConnectionLost

MYSQL_MODULES = ["MySQLdb", "pymysql"]
PG_MODULES = ["psycopg", "psycopg2"]


def _module(name: str) -> ModuleType:
    module = pytest.importorskip(name)  # psycopg is hidden in the psycopg2 runs
    if module.__name__ != name:  # pymysql.install_as_MySQLdb() in this process
        pytest.skip(f"{name} is replaced by {module.__name__} in this run")
    return module


def _wrapped(exc: Exception) -> Exception:
    """What Django raises for a driver error: its own class, chaining the original."""
    wrapper = django_errors.OperationalError(*exc.args)
    wrapper.__cause__ = exc
    return wrapper


def _pg_error(module: ModuleType, sqlstate: str | None, message: str = "x") -> Exception:
    if sqlstate is None:
        return module.OperationalError(message)
    exc = module.errors.lookup(sqlstate)(message)
    if module.__name__ == "psycopg2":
        # psycopg2 sets pgcode from C only; unpickling is the one way in.
        exc.__setstate__({"pgcode": sqlstate, "pgerror": message})
    return exc


class _Conn:
    def __init__(self, closed: int = 0, broken: bool = False) -> None:
        self.closed = closed
        self.broken = broken


# ##### error_code #####


@pytest.mark.parametrize("name", MYSQL_MODULES)
def test_mysql_error_code(name: str) -> None:
    module = _module(name)
    driver = driver_for(module)
    assert driver.error_code(module.OperationalError(2006, "gone away")) == 2006
    assert driver.error_code(_wrapped(module.OperationalError(2013, "lost"))) == 2013
    assert driver.error_code(module.InterfaceError(0, "")) == 0  # 0 is a code too
    assert driver.error_code(module.OperationalError(True, "x")) is None  # a bool is no code
    assert driver.error_code(module.Error("Already closed")) is None
    assert driver.error_code(module.Error()) is None
    assert driver.error_code(_wrapped(module.Error())) is None


@pytest.mark.parametrize("name", PG_MODULES)
def test_postgresql_error_code(name: str) -> None:
    module = _module(name)
    driver = driver_for(module)
    assert driver.error_code(_pg_error(module, "57P01")) == "57P01"
    assert driver.error_code(_wrapped(_pg_error(module, "08006"))) == "08006"
    assert driver.error_code(module.OperationalError("server closed the connection")) is None
    assert driver.error_code(module.Error()) is None
    assert driver.error_code(_wrapped(module.Error())) is None


def test_error_code_of_another_vendor_is_none() -> None:
    psycopg = _module("psycopg")
    assert driver_for(pymysql).error_code(ValueError()) is None
    assert driver_for(psycopg).error_code(pymysql.err.OperationalError(2006, "x")) is None


# ##### driver_for_error #####


@pytest.mark.parametrize("name", MYSQL_MODULES + PG_MODULES)
def test_driver_for_error(name: str) -> None:
    module = _module(name)
    driver = driver_for(module)
    assert driver.name == {"MySQLdb": "mysqlclient"}.get(name, name)
    errors = [module.Error("x"), module.OperationalError("x"), module.InterfaceError("x")]
    if name in PG_MODULES:
        errors.append(_pg_error(module, "25P03"))  # a SQLSTATE's own class
    for exc in errors:
        assert driver_for_error(exc) is driver, exc
        assert driver_for_error(_wrapped(exc)) is driver, exc


def test_driver_for_other_errors_is_none() -> None:
    assert driver_for_error(ValueError("server has gone away")) is None
    assert driver_for_error(django_errors.OperationalError("no cause")) is None
    # connguard's own errors subclass Django's but are not its copies: not unwrapped.
    lost = ConnectionLost(2006, "gone away")
    lost.__cause__ = pymysql.err.OperationalError(2006, "gone away")
    assert driver_for_error(lost) is None


def test_pymysql_installed_as_mysqldb() -> None:
    # In a fresh interpreter: the aliasing cannot be undone in this one.
    code = (
        "import pymysql; pymysql.install_as_MySQLdb(); "
        # What Django's MySQL backend imports: a second copy of pymysql.err.
        "import MySQLdb, MySQLdb.converters; "
        "assert pymysql.err.Error is not pymysql.Error; "
        "from connguard._drivers import driver_for, driver_for_error; "
        "print(driver_for(MySQLdb).name, "
        "driver_for_error(pymysql.OperationalError(2006, 'x')).name, "
        "driver_for_error(pymysql.err.OperationalError(2006, 'x')).name)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["pymysql", "pymysql", "pymysql"]


def test_hidden_or_unimported_drivers_are_not_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    psycopg = _module("psycopg")
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as tests/settings.py hides it
    assert driver_for_error(psycopg.OperationalError("x")) is None
    monkeypatch.delitem(sys.modules, "psycopg2", raising=False)
    assert driver_for_error(ValueError()) is None
    assert "psycopg2" not in sys.modules


# ##### is_disconnect / never_executed on each driver #####

# (class, args, is a disconnect, proves the statement never ran): the cases of
# tests/test_disconnects.py and tests/test_retry_rules.py.
MYSQL_CASES: list[tuple[str, tuple[Any, ...], bool, bool]] = [
    *[
        ("OperationalError", (code, "whatever"), True, code in MYSQL_NEVER_EXECUTED_CODES)
        for code in sorted(MYSQL_DISCONNECT_CODES)
    ],
    ("ProgrammingError", (2014, "Commands out of sync"), True, False),
    ("InterfaceError", (0, ""), True, True),
    ("Error", ("Already closed",), True, True),
    ("OperationalError", ("Lost connection to server during query",), True, False),
    ("OperationalError", ("Server has gone away",), True, False),
    ("OperationalError", (1317, "Query execution was interrupted"), False, False),
    ("OperationalError", (1205, "Lock wait timeout exceeded"), False, False),
    ("OperationalError", (2003, "Can't connect to MySQL server"), False, False),
    ("ProgrammingError", (1064, "You have an error in your SQL syntax"), False, False),
    ("IntegrityError", (1062, "Duplicate entry"), False, False),
    ("OperationalError", (1205, "lost connection to the lock manager"), False, False),
    ("OperationalError", (0, ""), False, False),
    ("Error", ("something else",), False, False),
]

# (SQLSTATE, message, is a disconnect, proves the statement never ran).
PG_CASES: list[tuple[str | None, str, bool, bool]] = [
    *[
        (state, "x", True, state == "57P05")
        for state in [*sorted(POSTGRESQL_DISCONNECT_SQLSTATES), "08000", "08003", "08006"]
    ],
    *[
        (
            None,
            f"prefix: {text.upper()}\n\tdetail",
            True,
            text in POSTGRESQL_NEVER_EXECUTED_MESSAGES,
        )
        for text in POSTGRESQL_DISCONNECT_MESSAGES
    ],
    ("57P05", "terminating connection due to idle-session timeout", True, True),
    ("57P01", "terminating connection due to administrator command", True, False),
    (None, "consuming input failed: server closed the connection unexpectedly", True, False),
    ("42P01", "relation does not exist", False, False),
    ("57014", "canceling statement due to statement timeout", False, False),
    ("40P01", "deadlock detected", False, False),
    ("XX000", "terminating connection pool job", False, False),
    (None, "cursor already closed", False, False),
]


@pytest.mark.parametrize("name", MYSQL_MODULES)
@pytest.mark.parametrize(("cls", "args", "disconnect", "unsent"), MYSQL_CASES)
def test_mysql_drivers_agree(
    name: str, cls: str, args: tuple[Any, ...], disconnect: bool, unsent: bool
) -> None:
    module = _module(name)
    driver = driver_for(module)
    raw = getattr(module, cls)(*args)
    for exc in (raw, _wrapped(raw)):
        assert driver.is_disconnect(exc, None) is disconnect
        assert is_disconnect(exc) is disconnect
        assert is_mysql_disconnect(exc) is disconnect
        assert driver.never_executed(exc) is unsent
        assert never_executed(exc) is unsent


@pytest.mark.parametrize("name", PG_MODULES)
@pytest.mark.parametrize(("sqlstate", "message", "disconnect", "unsent"), PG_CASES)
def test_postgresql_drivers_agree(
    name: str, sqlstate: str | None, message: str, disconnect: bool, unsent: bool
) -> None:
    module = _module(name)
    driver = driver_for(module)
    raw = _pg_error(module, sqlstate, message)
    for exc in (raw, _wrapped(raw)):
        assert driver.is_disconnect(exc, _Conn()) is disconnect
        assert is_disconnect(exc, _Conn()) is disconnect
        assert is_postgresql_disconnect(exc, _Conn()) is disconnect
        assert driver.never_executed(exc) is unsent
        assert never_executed(exc) is unsent
        # A closed or broken connection is dead whatever the error says.
        for conn in (_Conn(closed=1), _Conn(closed=2), _Conn(broken=True)):
            assert driver.is_disconnect(exc, conn)
            assert is_disconnect(exc, conn)


# ##### PostgreSQL time settings #####


@pytest.mark.parametrize(
    ("shown", "seconds"),
    [
        ("0", 0.0),
        ("250", 0.25),  # no unit: milliseconds
        ("1500ms", 1.5),
        ("1s", 1.0),
        ("1min", 60.0),
        ("90min", 5400.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("500us", 0.0005),
    ],
)
def test_pg_time_setting(shown: str, seconds: float) -> None:
    assert pg_time_setting(shown) == pytest.approx(seconds)


@pytest.mark.parametrize("shown", ["", "1 fortnight", "s", "1.2.3s"])
def test_pg_time_setting_rejects_what_it_cannot_read(shown: str) -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL time setting"):
        pg_time_setting(shown)
