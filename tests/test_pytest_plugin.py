"""The pytest plugin: its fixtures in this run, and a whole pytest run of a user's
tests with ``pytester``, in a subprocess on the same throwaway servers."""

from __future__ import annotations

import os
import pprint
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from connguard import _faults
from connguard._faults import FaultError
from tests.helpers import ALIAS, STOCK_ALIAS, VENDORS, select_one, server_id
from tests.ops_helpers import extra_alias

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

# The user's project: tests.settings picks the drivers (CONNGUARD_TEST_*_DRIVER).
SETTINGS = """
from tests.settings import *  # noqa: F403

INSTALLED_APPS = ["connguard"]
DATABASES = {databases}
"""

CONFTEST = """
import pytest
from django.db import connections


@pytest.fixture(scope="session")
def django_db_setup():
    # The throwaway servers' databases are used as they are.
    pass


@pytest.fixture
def unblocked(django_db_blocker):
    with django_db_blocker.unblock():
        yield
    for wrapper in connections.all(initialized_only=True):
        try:
            wrapper.close()
        except Exception:
            pass
"""

# A user's tests: a "worker" that runs one query, and what each fault does to it.
USER_TESTS = """
import pytest
from django.db import connections

GUARDED = ["default", "postgresql"]
STOCK = ["mysql_stock", "postgresql_stock"]


def job(alias):
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True, databases=GUARDED)
@pytest.mark.parametrize("alias", GUARDED)
@pytest.mark.parametrize("via", ["kill", "expire"])
def test_guarded_survives(alias, via, connguard_survives):
    job(alias)
    with connguard_survives(alias, via=via):
        assert job(alias) == 1


@pytest.mark.parametrize("alias", STOCK)
@pytest.mark.parametrize("via", ["kill", "expire"])
def test_stock_does_not_survive(alias, via, connguard_survives, unblocked):
    job(alias)
    with connguard_survives(alias, via=via):
        job(alias)


@pytest.mark.django_db(transaction=True, databases=GUARDED)
def test_a_block_that_never_uses_the_alias(connguard_survives):
    with connguard_survives("postgresql"):
        pass


@pytest.mark.django_db(databases=GUARDED)
def test_inside_the_test_transaction(connguard_kill):
    connguard_kill("default")
"""


# The same fixtures in Django's own test case classes, where pytest fixtures
# reach a test method through an autouse fixture of the class.
USER_TEST_CASES = """
import pytest
from django.db import connections
from django.test import SimpleTestCase, TestCase, TransactionTestCase

GUARDED = {"default", "postgresql"}
OPEN = {}


def job(alias):
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]


class UsesConnguard:
    @pytest.fixture(autouse=True)
    def _connguard(self, connguard_survives, connguard_kill, connguard_expire):
        self.survives = connguard_survives
        self.kill, self.expire = connguard_kill, connguard_expire


class WorkerTransactionTests(UsesConnguard, TransactionTestCase):
    databases = GUARDED

    def test_survives(self):
        for alias in sorted(GUARDED):
            for via in ("kill", "expire"):
                job(alias)
                with self.survives(alias, via=via):
                    assert job(alias) == 1

    def test_kill_and_expire(self):
        self.kill("default")
        assert job("default") == 1
        self.expire("postgresql")
        assert job("postgresql") == 1


class OneAliasTransactionTests(UsesConnguard, TransactionTestCase):
    databases = {"default"}

    def test_an_alias_left_out(self):
        self.kill("postgresql")


class WorkerTestCaseTests(UsesConnguard, TestCase):
    databases = GUARDED

    def test_inside_the_test_transaction(self):
        self.kill("default")


class NoDatabaseTests(UsesConnguard, SimpleTestCase):
    def test_kill(self):
        self.kill("default")

    def test_survives(self):
        with self.survives("postgresql", via="expire"):
            pass


@pytest.fixture
def open_db(django_db_blocker):
    # Database access that leaves the connections open, as a worker would.
    with django_db_blocker.unblock():
        yield


def test_open_a_connection(open_db):
    job("default")
    OPEN["default"] = connections["default"].connection


class OpenBeforeNoDatabaseTests(UsesConnguard, SimpleTestCase):
    def test_kill_an_open_connection(self):
        # Left open by the test before: refused all the same.
        assert connections["default"].connection is OPEN["default"]
        self.kill("default")


def test_the_open_connection_was_left_alone(open_db):
    assert job("default") == 1
    assert connections["default"].connection is OPEN["default"]
    connections["default"].close()


class WithDatabasesSimpleTests(UsesConnguard, SimpleTestCase):
    databases = GUARDED

    def test_survives(self):
        job("default")
        with self.survives("default"):
            assert job("default") == 1
"""


@pytest.fixture(autouse=True)
def _db(servers: dict[str, Any], django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        yield


# ##### The fixtures, in this run #####


@pytest.mark.parametrize("vendor", VENDORS)
def test_kill_and_expire(vendor: str, connguard_kill: Any, connguard_expire: Any) -> None:
    wrapper = connections[ALIAS[vendor]]
    # No connection yet: the fixture opens one to kill.
    killed = connguard_kill(ALIAS[vendor])
    select_one(wrapper)
    assert server_id(wrapper) != killed
    expired = server_id(wrapper)
    connguard_expire(ALIAS[vendor])
    select_one(wrapper)
    assert server_id(wrapper) != expired


@pytest.mark.parametrize("vendor", VENDORS)
def test_survives(vendor: str, connguard_survives: Any) -> None:
    with connguard_survives(ALIAS[vendor]):
        select_one(connections[ALIAS[vendor]])
    survived = f"did not survive a kill of the connection of {STOCK_ALIAS[vendor]!r}"
    with pytest.raises(AssertionError, match=survived):
        with connguard_survives(STOCK_ALIAS[vendor]):
            select_one(connections[STOCK_ALIAS[vendor]])
    with pytest.raises(ValueError, match="via must be one of 'kill', 'expire', not 'restart'"):
        with connguard_survives(ALIAS[vendor], via="restart"):
            pass


def test_errors_other_than_disconnects_pass_through(connguard_survives: Any) -> None:
    with pytest.raises(KeyError):
        with connguard_survives("default"):
            select_one(connections["default"])
            raise KeyError("the user's own error")


def test_a_block_must_use_the_alias(connguard_survives: Any) -> None:
    with pytest.raises(AssertionError, match="never opened a new connection on 'default' after an"):
        with connguard_survives("default", via="expire"):
            pass


def test_a_connection_inside_a_transaction_cannot_expire(connguard_expire: Any) -> None:
    from django.db import transaction

    with transaction.atomic(using="default"):
        select_one(connections["default"])
        with pytest.raises(FaultError, match="'default' is inside a transaction"):
            connguard_expire("default")
        # The faults' own check, for the drill and any caller.
        with pytest.raises(FaultError, match="'default' is inside a transaction"):
            _faults.expire(connections["default"])


@pytest.mark.parametrize("vendor", VENDORS)
def test_what_cannot_be_ended(vendor: str, connguard_kill: Any) -> None:
    wrapper = _faults.open_wrapper(connections.settings[ALIAS[vendor]], "private")
    with pytest.raises(FaultError, match="alias 'private' has no open connection to end"):
        _faults.kill(wrapper)
    select_one(wrapper)
    assert not _faults.wait_closed(_faults.socket_fd(wrapper), timeout=0.05)
    killed = _faults.kill(wrapper)
    # The session is gone: it can be neither killed nor expired again.
    with pytest.raises(FaultError, match=f"(could not|did not) end session {killed} of 'private'"):
        _faults.kill(wrapper)
    with pytest.raises(FaultError, match="could not lower the idle limit of 'private'"):
        _faults.expire(wrapper)
    wrapper.close()
    with extra_alias("lite", vendor, ENGINE="django.db.backends.sqlite3", NAME=":memory:"):
        with pytest.raises(FaultError, match="alias 'lite' is sqlite"):
            connguard_kill("lite")


# ##### A user's test run #####


def _user_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, **tests: str) -> None:
    databases = {
        alias: {key: value for key, value in connections.settings[alias].items() if key != "TEST"}
        for alias in (*ALIAS.values(), *STOCK_ALIAS.values())
    }
    pytester.makepyfile(
        connguard_user_settings=SETTINGS.format(databases=pprint.pformat(databases)),
        conftest=CONFTEST,
        **tests,
    )
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def _run(pytester: pytest.Pytester) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "--ds=connguard_user_settings", "-p", "no:randomly", "-p", "no:cacheprovider"
    )


def test_a_users_test_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _user_project(pytester, monkeypatch, test_worker=USER_TESTS)
    result = _run(pytester)
    result.assert_outcomes(passed=4, failed=6)
    for alias in ("mysql_stock", "postgresql_stock"):
        for fault in ("a kill", "an idle timeout"):
            result.stdout.fnmatch_lines(
                [
                    f"E*AssertionError: the block did not survive {fault} of the connection of "
                    f"{alias!r}: *Error: *"
                ]
            )
    for line in (
        "E*AssertionError: the block never opened a new connection on 'postgresql' after "
        "a kill, so it proves nothing*",
        "E*FaultError: alias 'default' is inside a transaction (a django.test.TestCase, or a "
        "plain django_db test, runs each test in one)*django_db(transaction=True)",
    ):
        result.stdout.fnmatch_lines([line])


def test_django_test_case_classes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SimpleTestCase, TestCase and TransactionTestCase, on the running Django: the
    fixtures work where the alias may be used outside a transaction, and elsewhere
    fail the test with a FaultError that says why, before touching any connection."""
    _user_project(pytester, monkeypatch, test_cases=USER_TEST_CASES)
    result = _run(pytester)
    result.assert_outcomes(passed=5, failed=5)
    blocked = "E*FaultError: alias {alias!r} is blocked in this test: Django allows no connection*"
    for test, message in (
        ("OneAliasTransactionTests.test_an_alias_left_out", blocked.format(alias="postgresql")),
        ("NoDatabaseTests.test_kill", blocked.format(alias="default")),
        ("NoDatabaseTests.test_survives", blocked.format(alias="postgresql")),
        ("OpenBeforeNoDatabaseTests.test_kill_an_open_connection", blocked.format(alias="default")),
        (
            "WorkerTestCaseTests.test_inside_the_test_transaction",
            "E*FaultError: alias 'default' is inside a transaction (a django.test.TestCase*",
        ),
    ):
        result.stdout.fnmatch_lines([f"_* {test} _*", message])
    result.stdout.no_fnmatch_line("*ERROR*")


def test_the_plugin_loads_without_django() -> None:
    code = (
        "import sys, connguard.pytest_plugin; "
        "assert not [m for m in sys.modules if m.split('.')[0] in "
        "('django', 'prometheus_client', 'opentelemetry')], sorted(sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_plugin_is_registered(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("connguard")
    assert plugin is not None and plugin.__name__ == "connguard.pytest_plugin"
