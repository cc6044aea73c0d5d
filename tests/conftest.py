from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connections

import connguard
from testbed.proxy import Proxy
from testbed.servers import MariaDBServer, PostgreSQLServer
from tests import helpers


def pytest_report_header() -> list[str]:
    return [
        f"connguard drivers: mysql={settings.MYSQL_DRIVER} postgresql={settings.PG_DRIVER}",
    ]


def _serve(server: MariaDBServer | PostgreSQLServer, aliases: tuple[str, ...]) -> Iterator[Any]:
    try:
        server.start()
        for alias in aliases:
            settings.DATABASES[alias].update(server.settings(settings.DATABASES[alias]["ENGINE"]))
        yield server
    finally:
        with contextlib.suppress(Exception):
            connections.close_all()
        server.stop()


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    yield from _serve(MariaDBServer(), settings.MYSQL_ALIASES)


@pytest.fixture(scope="session")
def postgresql() -> Iterator[PostgreSQLServer]:
    yield from _serve(PostgreSQLServer(), settings.PG_ALIASES)


@pytest.fixture(scope="session")
def servers(mariadb: MariaDBServer, postgresql: PostgreSQLServer) -> dict[str, object]:
    return {"mysql": mariadb, "postgresql": postgresql}


@pytest.fixture(scope="session")
def django_db_setup(servers: dict[str, object], django_db_blocker: pytest.FixtureRequest) -> None:
    # The servers are throwaway, so the tests use their databases directly
    # instead of creating test_* copies.
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        for alias in ("default", "postgresql"):
            call_command("migrate", run_syncdb=True, database=alias, verbosity=0)


@pytest.fixture(params=helpers.VENDORS)
def vendor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def proxy(vendor: str, servers: dict[str, Any]) -> Iterator[Proxy]:
    """A byte-counting, connection-cutting proxy in front of the vendor's server."""
    server = servers[vendor]
    p = Proxy(server.host, server.port)
    yield p
    p.close()


@pytest.fixture(autouse=True)
def _fresh_stats() -> None:
    connguard.reset_stats()


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    helpers.close_all()


@pytest.fixture
def max_age() -> Iterator[Callable[[str, Any], None]]:
    """Set an alias's CONN_MAX_AGE for one test (it applies from the next connect)."""
    saved: dict[str, Any] = {}

    def set_max_age(alias: str, value: Any) -> None:
        settings_dict = connections[alias].settings_dict
        saved.setdefault(alias, settings_dict["CONN_MAX_AGE"])
        settings_dict["CONN_MAX_AGE"] = value
        connections[alias].close()

    yield set_max_age
    for alias, value in saved.items():
        connections[alias].settings_dict["CONN_MAX_AGE"] = value
