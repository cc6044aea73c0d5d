"""System checks: the settings checks, and the database checks on the real servers."""

from __future__ import annotations

import ast
import io
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.core.management.commands.runserver import Command as RunserverCommand
from django.db import connections
from django.db.backends.signals import connection_created
from django.test import override_settings

from connguard import checks
from connguard._drivers import Driver, driver_for
from tests.helpers import ALIAS, STOCK_ALIAS, VENDORS, select_one
from tests.ops_helpers import SESSION_LIMIT_60, extra_alias, ids

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _db(servers: dict[str, Any], django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        yield


def settings_checks(vendor: str, *, guarded: bool = True, **overrides: Any) -> list[Any]:
    with extra_alias("checked", vendor, guarded=guarded, **overrides) as alias:
        info = checks.describe(alias, connections.settings[alias])
        assert info is not None
        return list(checks.settings_messages(info))


def settings_ids(vendor: str, *, guarded: bool = True, **overrides: Any) -> list[str]:
    return ids(settings_checks(vendor, guarded=guarded, **overrides))


def database_ids(vendor: str, *, guarded: bool = True, **overrides: Any) -> list[str]:
    with extra_alias("checked", vendor, guarded=guarded, **overrides) as alias:
        return ids(checks.check_database(databases=[alias]))


class OperationalError(Exception):
    """A driver's exception, as the drivers raise it: the code or libpq's message in args."""


def limited(extra: dict[str, Any] | None = None, *, vendor: str) -> dict[str, Any]:
    """OPTIONS that give each session a 60 s idle limit, plus ``connguard`` options."""
    options: dict[str, Any] = dict(SESSION_LIMIT_60[vendor])
    if extra is not None:
        options["connguard"] = extra
    return options


# ##### Settings checks #####


def test_the_test_settings() -> None:
    by_alias: dict[str, list[str]] = {}
    for message in checks.check_settings():
        alias = re.findall(r"DATABASES\['(\w+)'\]", message.msg)[0]
        by_alias.setdefault(alias, []).append(message.id)
    assert by_alias == {alias: ["connguard.W001"] for alias in STOCK_ALIAS.values()}


@pytest.mark.parametrize("vendor", VENDORS)
def test_stock_engine(vendor: str) -> None:
    with extra_alias("checked", vendor, guarded=False) as alias:
        info = checks.describe(alias, connections.settings[alias])
        assert info is not None
        (message,) = checks.settings_messages(info)
    assert message.id == "connguard.W001"
    assert f"Use ENGINE 'connguard.db.backends.{vendor}'" in message.hint
    assert message.hint.endswith("See docs/checks.md#connguardw001")


def test_gis_engine_without_the_guard() -> None:
    gis = "django.contrib.gis.db.backends.mysql"
    with extra_alias("checked", "mysql", ENGINE=gis) as alias:
        info = checks.describe(alias, connections.settings[alias])
        assert info is not None
        (message,) = checks.settings_messages(info)
    assert message.id == "connguard.W001"
    assert "Add GuardedWrapperMixin to this backend" in message.hint


@pytest.mark.parametrize("vendor", VENDORS)
def test_guarded_engine(vendor: str) -> None:
    assert settings_ids(vendor, CONN_MAX_AGE=None) == []
    assert settings_ids(vendor, CONN_MAX_AGE=300) == []
    assert settings_ids(vendor, CONN_MAX_AGE=0) == ["connguard.I001"]
    # A disabled guard is an unguarded alias that the user chose.
    assert settings_ids(vendor, OPTIONS={"connguard": {"enabled": False}}) == []


@pytest.mark.parametrize("vendor", VENDORS)
def test_per_request_connections_advice(vendor: str) -> None:
    with extra_alias("checked", vendor, CONN_MAX_AGE=0) as alias:
        info = checks.describe(alias, connections.settings[alias])
        assert info is not None
        (message,) = checks.settings_messages(info)
    assert message.id == "connguard.I001"
    assert message.msg.startswith("DATABASES['checked']['CONN_MAX_AGE'] is 0")
    assert "Under WSGI, set DATABASES['checked']['CONN_MAX_AGE'] = None" in message.hint
    assert "Under ASGI, where Django advises CONN_MAX_AGE = 0, " in message.hint


def test_no_per_request_advice_under_django_pool() -> None:
    """Django's pool needs CONN_MAX_AGE = 0: I001 would advise what Django refuses."""
    pooled = {"pool": {"min_size": 0, "max_size": 2}}
    assert settings_ids("postgresql", OPTIONS=pooled, CONN_MAX_AGE=0) == []
    assert settings_ids("postgresql", OPTIONS={"pool": True}, CONN_MAX_AGE=0) == []
    if settings.PG_DRIVER != "psycopg":
        return  # the pool itself needs psycopg 3
    with extra_alias("pooled", "postgresql", OPTIONS=pooled, CONN_MAX_AGE=0) as alias:
        err = io.StringIO()
        call_command("check", stdout=io.StringIO(), stderr=err)
        assert "connguard.I001" not in err.getvalue()
        try:
            assert select_one(connections[alias]) == 1
        finally:
            connections[alias].close()
            connections[alias].close_pool()
    # What I001 used to advise.
    with extra_alias("pooled", "postgresql", OPTIONS=pooled, CONN_MAX_AGE=None) as alias:
        with pytest.raises(ImproperlyConfigured, match="Pooling doesn't support persistent"):
            select_one(connections[alias])


def test_a_connguard_engine_that_cannot_load() -> None:
    with extra_alias("typo", "postgresql", ENGINE="connguard.db.backends.postgres") as alias:
        (error,) = [m for m in checks.check_settings() if "'typo'" in m.msg]
        info = checks.describe(alias, connections.settings[alias])
    assert info is not None and info.vendor is None and info.broken
    assert error.id == "connguard.E003"
    assert error.msg.startswith(
        "DATABASES['typo']['ENGINE'] = 'connguard.db.backends.postgres' cannot be loaded: "
        "'connguard.db.backends.postgres' isn't an available database backend"
    )
    assert error.hint.startswith(
        "Use 'connguard.db.backends.mysql' or 'connguard.db.backends.postgresql'. "
        "Or remove the alias from DATABASES."
    )


def test_invalid_options() -> None:
    with extra_alias("checked", "postgresql", OPTIONS={"connguard": {"validate_afer": 5}}):
        messages = checks.check_settings()
    (error,) = [m for m in messages if m.id.startswith("connguard.E")]
    assert error.id == "connguard.E001"
    assert "DATABASES['checked']['OPTIONS']['connguard'] has unknown key(s) 'validate_afer'" in (
        error.msg
    )


def test_connguard_options_on_a_stock_engine() -> None:
    options = {"OPTIONS": {"connguard": {"validate_after": 5}}}
    assert settings_ids("mysql", guarded=False, **options) == ["connguard.E002", "connguard.W001"]


def test_other_vendors_are_left_alone() -> None:
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    assert settings_ids("mysql", **sqlite) == []
    with extra_alias("checked", "mysql", ENGINE="no.such.backend") as alias:
        assert checks.describe(alias, connections.settings[alias]) is None


def test_manage_py_check() -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("check", stdout=out, stderr=err)
    assert err.getvalue().count("(connguard.W001)") == 2
    # PostgreSQL: Django 6.1's model checks connect to every MySQL alias, and an
    # invalid alias's connection raises there (tests/test_manage.py).
    with extra_alias("checked", "postgresql", OPTIONS={"connguard": {"server_timeout": 0}}):
        with pytest.raises(SystemCheckError, match=r"\(connguard\.E001\) DATABASES\['checked'\]"):
            call_command("check", stdout=out, stderr=err)


# ##### The middlebox idle timeout, declared in CONNGUARD #####


@pytest.mark.parametrize("vendor", VENDORS)
def test_middlebox_without_the_database(vendor: str) -> None:
    declared = {"connguard": {"server_timeout": 340}}
    with override_settings(CONNGUARD={"MIDDLEBOX_IDLE_TIMEOUT": 350}):
        assert settings_ids(vendor, OPTIONS=declared) == []
        assert settings_ids(vendor, OPTIONS={"connguard": {"server_timeout": 350}}) == [
            "connguard.W004"
        ]
        assert settings_ids(vendor, OPTIONS={"connguard": {"server_timeout": None}}) == [
            "connguard.W004"
        ]
        # "auto" needs the server's limit: the database check decides.
        assert settings_ids(vendor) == []
        assert settings_ids(vendor, guarded=False, CONN_MAX_AGE=300) == ["connguard.W001"]
        assert settings_ids(vendor, guarded=False, CONN_MAX_AGE=0) == ["connguard.W001"]
        assert settings_ids(vendor, guarded=False, CONN_MAX_AGE=None) == [
            "connguard.W001",
            "connguard.W004",
        ]
    per_alias = {"checked": 240, "default": None}
    options = {"connguard": {"server_timeout": 300}}
    with extra_alias("checked", vendor, OPTIONS=options) as alias:
        with override_settings(CONNGUARD={"MIDDLEBOX_IDLE_TIMEOUT": per_alias}):
            assert checks.middlebox_timeout("checked") == 240
            assert checks.middlebox_timeout("default") is None
            assert checks.middlebox_timeout(ALIAS["postgresql"]) is None
            info = checks.describe(alias, connections.settings[alias])
            assert info is not None
            (warning,) = checks.settings_messages(info)
    assert warning.id == "connguard.W004"
    assert "{'server_timeout': 230}" in warning.hint


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (True, "CONNGUARD must be a dict, not bool"),
        (
            {"MIDDLEBOX_IDLE_TIMEOUT": 350, "TYPO": 1},
            "CONNGUARD has unknown key(s) 'TYPO'; the allowed key is 'MIDDLEBOX_IDLE_TIMEOUT'.",
        ),
        (
            {"MIDDLEBOX_IDLE_TIMEOUT": -5},
            "CONNGUARD['MIDDLEBOX_IDLE_TIMEOUT'] = -5 is invalid: use a finite number of "
            "seconds > 0, or None, or a dict of DATABASES alias to those.",
        ),
        (
            {"MIDDLEBOX_IDLE_TIMEOUT": float("inf")},
            "CONNGUARD['MIDDLEBOX_IDLE_TIMEOUT'] = inf is invalid",
        ),
        (
            {"MIDDLEBOX_IDLE_TIMEOUT": {"default": "350"}},
            "CONNGUARD['MIDDLEBOX_IDLE_TIMEOUT']['default'] = '350' is invalid: use a finite "
            "number of seconds > 0, or None.",
        ),
        (
            {"MIDDLEBOX_IDLE_TIMEOUT": {"replica": 350}},
            "CONNGUARD['MIDDLEBOX_IDLE_TIMEOUT'] names the alias 'replica', which is not in "
            "DATABASES (its aliases: 'default', 'mysql_stock', 'postgresql', "
            "'postgresql_stock').",
        ),
    ],
    ids=["not-a-dict", "unknown-key", "negative", "infinite", "per-alias", "unknown-alias"],
)
def test_invalid_connguard_setting(value: Any, problem: str) -> None:
    with override_settings(CONNGUARD=value):
        (warning,) = [m for m in checks.check_settings() if m.id == "connguard.W006"]
        assert checks.middlebox_timeout("default") is None
    assert warning.msg.startswith(problem)
    assert warning.msg.endswith(
        " The middlebox checks (connguard.W004) are skipped until it is fixed."
    )


# ##### Database checks (check --database) #####


def test_database_checks_need_database() -> None:
    assert checks.check_database() == []
    assert checks.check_database(databases=None) == []


@pytest.mark.parametrize("vendor", VENDORS)
def test_conn_max_age_at_or_above_the_server_limit(vendor: str) -> None:
    options = limited(vendor=vendor)
    assert database_ids(vendor, guarded=False, OPTIONS=options, CONN_MAX_AGE=None) == [
        "connguard.W002"
    ]
    assert database_ids(vendor, guarded=False, OPTIONS=options, CONN_MAX_AGE=60) == [
        "connguard.W002"
    ]
    assert database_ids(vendor, guarded=False, OPTIONS=options, CONN_MAX_AGE=59) == []
    assert database_ids(vendor, guarded=False, OPTIONS=options, CONN_MAX_AGE=0) == []
    health = {"CONN_MAX_AGE": None, "CONN_HEALTH_CHECKS": True}
    assert database_ids(vendor, guarded=False, OPTIONS=options, **health) == []
    # The guard replaces a connection idle past the limit it reads at connect.
    assert database_ids(vendor, OPTIONS=options, CONN_MAX_AGE=None) == []
    disabled = limited({"enabled": False}, vendor=vendor)
    assert database_ids(vendor, OPTIONS=disabled, CONN_MAX_AGE=None) == ["connguard.W002"]


@pytest.mark.parametrize("vendor", VENDORS)
def test_guard_thresholds_at_or_above_the_server_limit(vendor: str) -> None:
    def check(**guard: Any) -> list[str]:
        return database_ids(vendor, OPTIONS=limited(guard, vendor=vendor))

    assert check(server_timeout=60) == ["connguard.W003"]
    assert check(server_timeout=120) == ["connguard.W003"]
    assert check(server_timeout=50) == []
    assert check(server_timeout=None, validate_after=60) == ["connguard.W003"]
    assert check(server_timeout=None, validate_after=30) == []
    assert check(server_timeout=None, validate_after=None) == []
    with extra_alias("checked", vendor, OPTIONS=limited({"server_timeout": 90}, vendor=vendor)):
        (warning,) = checks.check_database(databases=["checked"])
    name = "wait_timeout" if vendor == "mysql" else "idle_session_timeout"
    assert warning.msg == (
        f"The server of DATABASES['checked'] ends sessions idle for 60s ({name}), and "
        "OPTIONS['connguard']['server_timeout'] is 90s."
    )


def test_pool_knows_the_server_limit() -> None:
    """Under OPTIONS["pool"] "auto" reads the limit once per pooled connection."""
    if settings.PG_DRIVER != "psycopg":
        pytest.skip("Django's pool needs psycopg 3")
    options = {**SESSION_LIMIT_60["postgresql"], "pool": {"min_size": 0, "max_size": 2}}
    with extra_alias("checked", "postgresql", OPTIONS=options, CONN_MAX_AGE=0) as alias:
        try:
            assert checks.check_database(databases=[alias]) == []
            select_one(connections[alias])
            # What the guard learnt is what the check judged.
            assert connections[alias].connguard_status()["server_idle_limit"] == 60.0
            with override_settings(CONNGUARD={"MIDDLEBOX_IDLE_TIMEOUT": 120}):
                assert checks.check_database(databases=[alias]) == []
            with override_settings(CONNGUARD={"MIDDLEBOX_IDLE_TIMEOUT": 30}):
                (warning,) = checks.check_database(databases=[alias])
        finally:
            connections[alias].close()
            connections[alias].close_pool()
    assert warning.id == "connguard.W004"
    assert "after 60s of idleness ('auto': the server's idle_session_timeout)" in warning.msg
    declared = {**options, "connguard": {"server_timeout": 90}}
    with extra_alias("checked", "postgresql", OPTIONS=declared, CONN_MAX_AGE=0) as alias:
        try:
            assert ids(checks.check_database(databases=[alias])) == ["connguard.W003"]
        finally:
            connections[alias].close_pool()


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_checks_read_the_limit_with_the_guards_driver(
    vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []

    def server_facts(self: Driver, connection: Any) -> tuple[float, None]:
        seen.append(connection)
        return 42.0, None

    with extra_alias("checked", vendor, OPTIONS=limited({"server_timeout": 50}, vendor=vendor)):
        driver = type(driver_for(connections["checked"].Database))
        monkeypatch.setattr(driver, "server_facts", server_facts)
        (warning,) = checks.check_database(databases=["checked"])
    assert warning.msg.startswith("The server of DATABASES['checked'] ends sessions idle for 42s")
    # A declared server_timeout: the guard itself asked nothing, the check asked once.
    assert len(seen) == 1 and seen[0] is not None


@pytest.mark.parametrize("vendor", VENDORS)
def test_middlebox_against_the_server_limit(vendor: str) -> None:
    with override_settings(CONNGUARD={"MIDDLEBOX_IDLE_TIMEOUT": 30}):
        assert database_ids(vendor, OPTIONS=limited(vendor=vendor)) == ["connguard.W004"]
        # Declared limits are judged without the database, by the settings checks.
        assert database_ids(vendor, OPTIONS=limited({"server_timeout": 20}, vendor=vendor)) == []
    with override_settings(CONNGUARD={"MIDDLEBOX_IDLE_TIMEOUT": 120}):
        assert database_ids(vendor, OPTIONS=limited(vendor=vendor)) == []
        if vendor == "postgresql":  # PostgreSQL's default: no idle limit at all
            assert database_ids(vendor) == ["connguard.W004"]


@pytest.mark.parametrize("vendor", VENDORS)
def test_unreachable_server(vendor: str) -> None:
    with extra_alias("down", vendor, port="closed") as alias:
        (warning,) = checks.check_database(databases=[alias])
        port = connections.settings[alias]["PORT"]
    assert warning.id == "connguard.W005"
    assert warning.msg.startswith(
        "connguard could not read the idle limits of the server of DATABASES['down']: the "
        "connection was refused (no server listens there, or a firewall rejects it). The driver "
        "said: OperationalError: "
    )
    assert warning.hint.startswith(
        f"Check DATABASES['down']['HOST'] and DATABASES['down']['PORT'] (127.0.0.1:{port}): "
        "is the server running there"
    )
    assert "connguard status" not in warning.hint


@pytest.mark.parametrize("vendor", VENDORS)
def test_what_went_wrong_connecting(vendor: str, servers: dict[str, Any]) -> None:
    wrong_login = (
        {"USER": "connguard", "PASSWORD": "not-the-password"}
        if vendor == "mysql"
        else {"USER": "cg_no_such_role"}  # the test server trusts every existing role
    )
    cases = {
        "authentication": (
            wrong_login,
            "the server refused the login (authentication failed)",
            "Check DATABASES['x']['USER'] and DATABASES['x']['PASSWORD'], and that this user "
            "may connect from this host.",
        ),
        "unknown_database": (
            {"NAME": "cg_no_such_db"},
            "the database does not exist on the server",
            "Check DATABASES['x']['NAME'] ('cg_no_such_db'), or create that database.",
        ),
    }
    for kind, (overrides, summary, advice) in cases.items():
        with extra_alias("x", vendor, **overrides) as alias:
            (warning,) = checks.check_database(databases=[alias])
        assert warning.id == "connguard.W005", kind
        assert f"DATABASES['x']: {summary}. The driver said: OperationalError: " in warning.msg
        assert warning.hint == f"{advice} See docs/checks.md#connguardw005", kind


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_connection_that_times_out(vendor: str) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        options = {"connect_timeout": 1} | ({"read_timeout": 1} if vendor == "mysql" else {})
        port = str(silent.getsockname()[1])
        with extra_alias("slow", vendor, PORT=port, OPTIONS=options) as alias:
            (warning,) = checks.check_database(databases=[alias])
    assert "DATABASES['slow']: the connection timed out. The driver said: " in warning.msg
    assert warning.hint.startswith(
        f"Check that DATABASES['slow']['HOST'] and DATABASES['slow']['PORT'] (127.0.0.1:{port}) "
        "can be reached from this host"
    )


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        # libpq lists every address it tried: the server's answer wins.
        (
            'connection to server at "::1", port 5432 failed: Connection refused\n'
            'connection to server at "127.0.0.1", port 5432 failed: FATAL:  password '
            'authentication failed for user "app"',
            "authentication",
        ),
        (
            'could not translate host name "db" to address: Name or service not known',
            "unknown_host",
        ),
        ("FATAL:  sorry, too many clients already", "too_many_connections"),
        ("server closed the connection unexpectedly", "error"),
    ],
)
def test_libpq_messages(message: str, kind: str) -> None:
    try:
        from psycopg import OperationalError as PGError
    except ImportError:  # hidden in the psycopg2 runs (tests/settings.py)
        from psycopg2 import OperationalError as PGError
    assert checks.classify(PGError(message)).kind == kind


def test_mysql_codes() -> None:
    from pymysql.err import OperationalError

    assert checks.classify(OperationalError(1045, "Access denied")).kind == "authentication"
    assert checks.classify(OperationalError(1040, "Too many connections")).kind == (
        "too_many_connections"
    )
    refused = "Can't connect to MySQL server on 'db' ([Errno 111] Connection refused)"
    assert checks.classify(OperationalError(2003, refused)).kind == "refused"
    assert checks.classify(OperationalError(2005, "Unknown server host 'db' (-2)")).kind == (
        "unknown_host"
    )


def test_the_checks_skip_an_alias_that_cannot_connect() -> None:
    # connguard.E002: the driver would refuse the key (mysqlclient even with a TypeError).
    options = {"OPTIONS": {"connguard": {}}}
    for vendor in VENDORS:
        with extra_alias("stray", vendor, guarded=False, **options) as alias:
            assert checks.check_database(databases=[alias]) == []


def test_check_database_command() -> None:
    options = limited({"server_timeout": 90}, vendor="postgresql")
    err = io.StringIO()
    with extra_alias("checked", "postgresql", OPTIONS=options):
        call_command("check", "--database", "checked", stdout=io.StringIO(), stderr=err)
    assert "connguard.W003" in err.getvalue()


def test_every_check_id_has_a_docs_section() -> None:
    source = "".join(path.read_text() for path in (ROOT / "src/connguard/checks").glob("*.py"))
    docs = (ROOT / "docs/checks.md").read_text()
    used = set(re.findall(r'id="(connguard\.[EWI]\d{3})"', source))
    documented = set(re.findall(r"^### `(connguard\.[EWI]\d{3})`", docs, re.MULTILINE))
    assert used == documented
    assert len(used) == 11


# ##### Which commands connect (Django 6.1 passes every alias to the checks) #####


def _in_connguard_checks() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith("connguard.checks"):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


@pytest.fixture
def opened_by_connguard() -> Iterator[list[str]]:
    """The aliases that connguard's checks open a connection to (Django's own do not count:
    Django 6.1's model checks connect to every MySQL alias)."""
    opened: list[str] = []

    def note(sender: object, connection: Any, **kwargs: object) -> None:
        if _in_connguard_checks():
            opened.append(connection.alias)

    for wrapper in connections.all():
        wrapper.close()
    connection_created.connect(note)
    try:
        yield opened
    finally:
        connection_created.disconnect(note)


def test_plain_commands_connect_to_no_alias(opened_by_connguard: list[str]) -> None:
    call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
    # What runserver runs before it serves.
    RunserverCommand(stdout=io.StringIO(), stderr=io.StringIO()).check(display_num_errors=True)
    assert opened_by_connguard == []
    # Django 6.1 passes every alias to the checks that have no database tag.
    assert checks.check_settings(databases=list(connections)) is not None
    assert opened_by_connguard == []


def test_migrate_connects_to_its_alias_only(opened_by_connguard: list[str]) -> None:
    call_command("migrate", database=ALIAS["postgresql"], verbosity=0)
    assert set(opened_by_connguard) <= {ALIAS["postgresql"]}


def test_check_database_connects_to_that_alias(opened_by_connguard: list[str]) -> None:
    call_command(
        "check", "--database", ALIAS["postgresql"], stdout=io.StringIO(), stderr=io.StringIO()
    )
    assert opened_by_connguard == [ALIAS["postgresql"]]


# ##### The package #####


def test_the_checks_modules() -> None:
    """One concern per module, none over 300 lines, none importing the package itself."""
    package = ROOT / "src/connguard/checks"
    for path in package.glob("*.py"):
        source = path.read_text()
        assert len(source.splitlines()) <= 300, path.name
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "connguard.checks", path.name
                assert not (
                    node.module == "connguard"
                    and any(alias.name == "checks" for alias in node.names)
                ), path.name


@pytest.mark.parametrize("vendor", VENDORS)
def test_failover_timeout_longer_than_a_task_time_limit(vendor: str) -> None:
    waits = {"OPTIONS": {"connguard": {"failover_timeout": 60}}}
    with override_settings(CELERY_TASK_SOFT_TIME_LIMIT=45, CELERY_TASK_TIME_LIMIT=90):
        (warning,) = [m for m in settings_checks(vendor, **waits) if m.id == "connguard.W007"]
        assert warning.msg.startswith(
            "DATABASES['checked']['OPTIONS']['connguard']['failover_timeout'] is 60s, but "
            "CELERY_TASK_SOFT_TIME_LIMIT is 45s"
        )
        assert warning.hint.endswith("docs/checks.md#connguardw007")
        # Below the shortest limit, off, or on a replica: nothing to say.
        for options in ({"failover_timeout": 30}, {"failover_timeout": 0}, {"role": "replica"}):
            assert "connguard.W007" not in ids(
                settings_checks(vendor, OPTIONS={"connguard": options})
            )
    with override_settings(Q_CLUSTER={"timeout": 20}):
        assert "connguard.W007" in ids(settings_checks(vendor))  # the default wait, 30 s
    assert "connguard.W007" not in ids(settings_checks(vendor))  # no limit declared
