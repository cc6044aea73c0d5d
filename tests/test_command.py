"""``manage.py connguard status|drill`` against the real servers."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

import connguard
from connguard.management.status import STATS_KEYS
from tests.helpers import ALIAS, STOCK_ALIAS, VENDORS, select_one, server_id
from tests.ops_helpers import extra_alias

REPORT_KEYS = {
    "alias",
    "engine",
    "vendor",
    "guarded",
    "driver",
    "host",
    "port",
    "database",
    "settings",
    "connection",
    "stats",
    "server",
    "verdict",
    "recommendations",
}
LIMITS = {
    "mysql": {"wait_timeout", "interactive_timeout"},
    "postgresql": {"idle_session_timeout", "idle_in_transaction_session_timeout"},
}
DRIVERS = {"mysql": settings.MYSQL_DRIVER, "postgresql": settings.PG_DRIVER}
SECRET = "Cg-status-Secret-9"


@pytest.fixture(autouse=True)
def _db(servers: dict[str, Any], django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        yield


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("connguard", *args, stdout=out)
    return out.getvalue()


def run_fails(*args: str, match: str) -> str:
    """Run a command that must fail with ``match``; return what it printed first."""
    out = io.StringIO()
    with pytest.raises(CommandError, match=match):
        call_command("connguard", *args, stdout=out)
    return out.getvalue()


def status(*args: str) -> dict[str, Any]:
    document = json.loads(run("status", "--json", *args))
    assert set(document) == {"version", "aliases"}
    assert document["version"] == 1
    return dict(document["aliases"])


def global_limit(servers: dict[str, Any], vendor: str) -> str:
    if vendor == "mysql":
        return str(servers[vendor].sql("SELECT @@global.wait_timeout")).strip()
    return str(servers[vendor].sql("SHOW idle_session_timeout")).strip()


# ##### status #####


def test_status_json_schema(servers: dict[str, Any]) -> None:
    reports = status()
    assert list(reports) == list(settings.DATABASES)
    for alias, report in reports.items():
        vendor = report["vendor"]
        assert set(report) == REPORT_KEYS
        assert report["alias"] == alias
        assert report["engine"] == settings.DATABASES[alias]["ENGINE"]
        assert report["driver"] == DRIVERS[vendor]
        assert report["host"] == "127.0.0.1"
        assert report["port"] == str(servers[vendor].port)
        assert report["database"] == "connguard"
        assert set(report["settings"]) == {"CONN_MAX_AGE", "CONN_HEALTH_CHECKS", "connguard"}
        assert set(report["connection"]) == {
            "connected",
            "dead",
            "age",
            "idle",
            "server_idle_limit",
            "role",
            "node",
        }
        assert set(STATS_KEYS) <= set(report["stats"])
        assert all(isinstance(value, int) for value in report["stats"].values())
        server = report["server"]
        assert set(server) == {"reachable", "version", "role", "idle_limits", "failure"}
        assert server["role"] == "read-write"
        assert server["reachable"] is True and server["failure"] is None
        assert isinstance(server["version"], str) and server["version"]
        assert set(server["idle_limits"]) == LIMITS[vendor]
        for item in report["recommendations"]:
            assert set(item) == {"id", "level", "message", "hint"}
            assert item["hint"].endswith(item["id"].replace(".", "").lower())
    mysql_limit = float(global_limit(servers, "mysql"))
    assert reports["default"]["server"]["idle_limits"]["wait_timeout"] == mysql_limit
    # PostgreSQL's default: no idle limits at all.
    assert set(reports["postgresql"]["server"]["idle_limits"].values()) == {None}
    for vendor in VENDORS:
        guarded, stock = reports[ALIAS[vendor]], reports[STOCK_ALIAS[vendor]]
        assert guarded["guarded"] is True
        assert guarded["settings"]["connguard"] == {
            "enabled": True,
            "validate_after": 10.0,
            "socket_check": True,
            "server_timeout": "auto",
            "role": "primary",
            "failover_timeout": 30.0,
        }
        assert (guarded["verdict"], guarded["recommendations"]) == ("ok", [])
        assert stock["guarded"] is False
        assert stock["settings"]["connguard"] is None
        assert stock["verdict"] == "warning"
    # The stock MySQL alias keeps its connections forever, past wait_timeout.
    recommended = {a: [i["id"] for i in r["recommendations"]] for a, r in reports.items()}
    assert recommended["mysql_stock"] == ["connguard.W001", "connguard.W002"]
    assert recommended["postgresql_stock"] == ["connguard.W001"]


@pytest.mark.parametrize("vendor", VENDORS)
def test_status_shows_this_process(vendor: str, connguard_kill: Any) -> None:
    alias = ALIAS[vendor]
    connguard.reset_stats()
    assert status("--database", alias)[alias]["connection"]["connected"] is False
    select_one(connections[alias])
    killed = connguard_kill(alias)
    select_one(connections[alias])  # replaced by the guard
    raw = connections[alias].connection
    assert server_id(connections[alias]) != killed
    report = status("--database", alias)[alias]
    # The command read the server through a connection of its own.
    assert connections[alias].connection is raw
    assert {key: n for key, n in report["stats"].items() if n} == connguard.stats(alias)
    connection = report["connection"]
    assert connection["connected"] is True and connection["dead"] is False
    assert connection["age"] >= connection["idle"] >= 0
    assert report["stats"]["connections_opened"] == 2
    assert report["stats"]["replaced"] == report["stats"]["replaced_socket_closed"] == 1
    text = run("status", "--database", alias)
    assert "connection   open in this process" in text
    assert "replaced_socket_closed 1" in text


@pytest.mark.parametrize("vendor", VENDORS)
def test_status_never_shows_the_password(vendor: str, servers: dict[str, Any]) -> None:
    user = {}
    if vendor == "mysql":
        servers[vendor].sql(
            f"CREATE USER IF NOT EXISTS 'cg_status'@'%' IDENTIFIED BY '{SECRET}';"
            "GRANT SELECT ON *.* TO 'cg_status'@'%'"
        )
        user = {"USER": "cg_status"}
    with extra_alias("secret", vendor, PASSWORD=SECRET, **user):
        text = run("status", "--database", "secret")
        document = run("status", "--json", "--database", "secret")
    assert "verdict      ok" in text
    assert SECRET not in text and SECRET not in document
    assert "@127.0.0.1" not in text + document  # no user:password@host DSN either


def test_status_text_lists_every_alias_with_its_verdict() -> None:
    text = run("status")
    for alias in settings.DATABASES:
        assert re.search(rf"^{alias}: ", text, re.MULTILINE)
    assert text.count("verdict      ok") == 2
    assert text.count("verdict      warning") == 2
    assert text.count("connguard.W001 (warning)") == 2


def test_status_of_an_invalid_alias_is_an_error_verdict() -> None:
    options = {"OPTIONS": {"connguard": {"validate_after": -1}}}
    with extra_alias("invalid", "mysql", **options):
        report = status("--database", "invalid")["invalid"]
        text = run("status", "--database", "invalid")
    assert report["verdict"] == "error"
    assert [item["id"] for item in report["recommendations"]] == ["connguard.E001"]
    # The ENGINE loads; the invalid options stop the connection, so the server is not read.
    assert report["server"] is None and report["driver"] == DRIVERS["mysql"]
    assert text.startswith(
        "invalid: mysql, ENGINE connguard.db.backends.mysql (invalid guard options), driver "
    )


def test_status_of_a_database_connguard_does_not_guard() -> None:
    with extra_alias("lite", "mysql", ENGINE="django.db.backends.sqlite3", NAME=":memory:"):
        report = status("--database", "lite")["lite"]
        text = run("status", "--database", "lite")
    assert (report["vendor"], report["guarded"], report["server"]) == ("sqlite", False, None)
    assert (report["verdict"], report["driver"]) == ("ok", "sqlite3")
    assert "  server       127.0.0.1:" in text and "idle limits" not in text


def test_status_of_an_engine_that_cannot_load() -> None:
    with extra_alias("broken", "mysql", ENGINE="no.such.backend"):
        report = status("--database", "broken")["broken"]
        run_fails("drill", "--database", "broken", match="the ENGINE of 'broken' cannot be loaded")
    assert (report["vendor"], report["verdict"]) == (None, "error")
    (item,) = report["recommendations"]
    assert (
        item["id"] is None
        and "'no.such.backend' isn't an available database backend" in (item["message"])
    )


@pytest.mark.parametrize("vendor", VENDORS)
def test_status_of_an_unreachable_server(vendor: str) -> None:
    refused = "the connection was refused (no server listens there, or a firewall rejects it)"
    with extra_alias("down", vendor, port="closed"):
        output = run_fails(
            "status",
            "--json",
            "--database",
            "down",
            match=rf"could not read the server of 'down': {re.escape(refused)}\. See the ",
        )
        text = run_fails("status", "--database", "down", match="could not read")
    report = json.loads(output)["aliases"]["down"]
    failure = report["server"].pop("failure")
    assert report["server"] == {
        "reachable": False,
        "version": None,
        "role": None,
        "idle_limits": {},
    }
    assert failure["kind"] == "refused" and failure["summary"] == refused
    assert failure["error"].startswith("OperationalError: ")
    assert report["verdict"] == "error"
    assert [item["id"] for item in report["recommendations"]] == ["connguard.W005"]
    assert re.search(
        rf"  server       not read at 127\.0\.0\.1:\d+, database 'connguard': "
        rf"{re.escape(refused)}\n",
        text,
    )
    assert "unreachable" not in text and "connguard status" not in text


@pytest.mark.parametrize("vendor", VENDORS)
def test_status_of_a_failed_login(vendor: str) -> None:
    login = (
        {"USER": "connguard", "PASSWORD": "not-the-password"}
        if vendor == "mysql"
        else {"USER": "cg_no_such_role"}
    )
    summary = "the server refused the login (authentication failed)"
    with extra_alias("login", vendor, **login):
        text = run_fails(
            "status",
            "--database",
            "login",
            match=rf"could not read the server of 'login': {re.escape(summary)}\.",
        )
    assert f"database 'connguard': {summary}" in text
    assert (
        "connguard.W005 (warning): connguard could not read the idle limits of the server " in text
    )
    assert "Check DATABASES['login']['USER'] and DATABASES['login']['PASSWORD']" in text
    assert "unreachable" not in text and "reach" not in text


@pytest.mark.parametrize("vendor", VENDORS)
def test_status_of_options_on_a_stock_engine(vendor: str) -> None:
    """connguard.E002: the driver would refuse to connect, so the server is not read."""
    with extra_alias("stray", vendor, guarded=False, OPTIONS={"connguard": {}}):
        report = status("--database", "stray")["stray"]
        text = run("status", "--database", "stray")
    assert report["server"] is None and report["verdict"] == "error"
    assert [item["id"] for item in report["recommendations"]] == [
        "connguard.E002",
        "connguard.W001",
    ]
    assert "could not" not in text and "unreachable" not in text


# ##### Counters #####


def test_status_shows_every_counter() -> None:
    with extra_alias("jobs", "postgresql", CONN_MAX_AGE=0) as alias:
        with connguard.job():
            select_one(connections[alias])
        # CONN_MAX_AGE = 0: closed at the end of the job.
        assert connections[alias].connection is None
        report = status("--database", alias)[alias]
        text = run("status", "--database", alias)
    assert list(report["stats"]) == list(STATS_KEYS)
    assert report["stats"]["closed_at_job_boundary"] == 1
    assert report["stats"]["closed_at_job_boundary_max_age"] == 1
    assert report["stats"]["closed_at_job_boundary_error"] == 0
    counters = re.search(r"^  counters     (.*?)\n  verdict", text, re.MULTILINE | re.DOTALL)
    assert counters is not None
    shown = dict(item.rsplit(" ", 1) for item in re.split(r",\s+", counters.group(1).strip()))
    assert shown == {key: str(value) for key, value in report["stats"].items()}
    assert all(len(line) <= 100 for line in counters.group(0).splitlines()[:-1])


def test_every_counter_is_documented() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs/stats-and-logging.md").read_text()
    table = set(re.findall(r"^\| `(\w+)` \|", docs, re.MULTILINE))
    assert table == set(STATS_KEYS)


def test_unknown_alias() -> None:
    for subcommand in ("status", "drill"):
        run_fails(subcommand, "--database", "nope", match="unknown alias 'nope': DATABASES has")


# ##### drill #####


@pytest.mark.parametrize("vendor", VENDORS)
def test_drill_recovers_on_a_guarded_alias(vendor: str, servers: dict[str, Any]) -> None:
    alias = ALIAS[vendor]
    # The process's own connection, open before the drill, must come out untouched.
    own = connections[alias]
    select_one(own)
    raw, session = own.connection, server_id(own)
    before = global_limit(servers, vendor)

    text = run("drill", "--database", alias)

    lines = text.splitlines()
    assert lines[0].startswith(f"connguard drill on {alias!r}")
    steps = [line for line in lines if re.match(r"  \d\. ", line)]
    assert len(steps) == 5, text
    assert all(": ok" in step for step in steps), text
    replaced = [s for s in steps if "the guard replaced the connection (socket_closed)" in s]
    assert len(replaced) == 2, text
    assert lines[-1] == (
        f"verdict: {alias!r} recovered from a server-side kill and from an idle timeout; "
        "no error reached the code that used it."
    )
    select_one(own)
    assert own.connection is raw and server_id(own) == session
    assert global_limit(servers, vendor) == before


@pytest.mark.parametrize("vendor", VENDORS)
def test_drill_shows_the_failure_of_the_stock_backend(vendor: str) -> None:
    alias = STOCK_ALIAS[vendor]
    failed = f"the drill failed on {alias!r}: 2 of 2 disconnects reached the code as errors"
    text = run_fails("drill", "--database", alias, match=failed)
    assert len(re.findall(r"FAILED with (Operational|Interface)Error", text)) == 2, text
    assert "close the broken connection and open a new one by hand: ok" in text
    assert f"use ENGINE 'connguard.db.backends.{vendor}'" in text


def test_drill_with_the_guard_turned_off() -> None:
    with extra_alias("off", "postgresql", OPTIONS={"connguard": {"enabled": False}}):
        text = run_fails("drill", "--database", "off", match="the drill failed on 'off'")
    assert "1. open a connection with Django's stock backend: ok" in text
    assert "turn the guard on: remove OPTIONS['connguard']['enabled'] = False" in text


@pytest.mark.parametrize("vendor", VENDORS)
def test_drill_on_an_unreachable_server(vendor: str) -> None:
    with extra_alias("down", vendor, port="closed"):
        run_fails(
            "drill", "--database", "down", match=r"cannot connect to 'down' \(127\.0\.0\.1:\d+\)"
        )


def test_drill_needs_a_supported_vendor() -> None:
    with extra_alias("lite", "mysql", ENGINE="django.db.backends.sqlite3", NAME=":memory:"):
        run_fails("drill", "--database", "lite", match="'lite' is sqlite")


def test_drill_with_invalid_options() -> None:
    with extra_alias("invalid", "mysql", OPTIONS={"connguard": {"socket_check": 1}}):
        run_fails("drill", "--database", "invalid", match=r"\['socket_check'\] = 1 is invalid")


def test_drill_without_the_right_to_end_a_session(servers: dict[str, Any]) -> None:
    server = servers["postgresql"]
    server.sql(
        "DO $$ BEGIN CREATE ROLE cg_drill LOGIN; EXCEPTION WHEN duplicate_object THEN END $$"
    )
    server.sql("REVOKE EXECUTE ON FUNCTION pg_terminate_backend(integer, bigint) FROM PUBLIC")
    try:
        with extra_alias("restricted", "postgresql", USER="cg_drill"):
            text = run_fails(
                "drill",
                "--database",
                "restricted",
                match=r"may not end its own session \d+: .*EXECUTE on pg_terminate_backend",
            )
    finally:
        server.sql("GRANT EXECUTE ON FUNCTION pg_terminate_backend(integer, bigint) TO PUBLIC")
    assert "1. open a connection through the guard: ok" in text
