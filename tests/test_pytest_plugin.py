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


def test_a_users_test_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    databases = {
        alias: {key: value for key, value in connections.settings[alias].items() if key != "TEST"}
        for alias in (*ALIAS.values(), *STOCK_ALIAS.values())
    }
    pytester.makepyfile(
        connguard_user_settings=SETTINGS.format(databases=pprint.pformat(databases)),
        conftest=CONFTEST,
        test_worker=USER_TESTS,
    )
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    result = pytester.runpytest_subprocess(
        "--ds=connguard_user_settings", "-p", "no:randomly", "-p", "no:cacheprovider"
    )
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
        "E*FaultError: alias 'default' is inside a transaction (a plain django_db test runs "
        "in one)*django_db(transaction=True)",
    ):
        result.stdout.fnmatch_lines([line])


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
