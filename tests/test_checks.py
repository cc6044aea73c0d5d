"""System checks: the settings checks, and the database checks on the real servers."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connections
from django.test import override_settings

from connguard import checks
from tests.helpers import ALIAS, STOCK_ALIAS, VENDORS
from tests.ops_helpers import SESSION_LIMIT_60, extra_alias, ids

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _db(servers: dict[str, Any], django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        yield


def settings_ids(vendor: str, *, guarded: bool = True, **overrides: Any) -> list[str]:
    with extra_alias("checked", vendor, guarded=guarded, **overrides) as alias:
        info = checks.describe(alias, connections.settings[alias])
        assert info is not None
        return ids(checks.settings_messages(info))


def database_ids(vendor: str, *, guarded: bool = True, **overrides: Any) -> list[str]:
    with extra_alias("checked", vendor, guarded=guarded, **overrides) as alias:
        return ids(checks.check_database(databases=[alias]))


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
    with extra_alias("checked", "mysql", OPTIONS={"connguard": {"server_timeout": 0}}):
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
    with override_settings(CONNGUARD={"MIDDLEBOX_IDLE_TIMEOUT": per_alias}):
        assert checks.middlebox_timeout("checked") == 240
        assert checks.middlebox_timeout("default") is None
        assert checks.middlebox_timeout(ALIAS["postgresql"]) is None
        options = {"connguard": {"server_timeout": 300}}
        with extra_alias("checked", vendor, OPTIONS=options) as alias:
            info = checks.describe(alias, connections.settings[alias])
            assert info is not None
            (warning,) = checks.settings_messages(info)
    assert warning.id == "connguard.W004"
    assert "{'server_timeout': 230}" in warning.hint


@pytest.mark.parametrize(
    "value",
    [True, {"MIDDLEBOX_IDLE_TIMEOUT": 350, "TYPO": 1}, {"MIDDLEBOX_IDLE_TIMEOUT": -5}],
    ids=["not-a-dict", "unknown-key", "negative"],
)
def test_invalid_connguard_setting(value: Any) -> None:
    with override_settings(CONNGUARD=value):
        (warning,) = [m for m in checks.check_settings() if m.id == "connguard.W006"]
        assert checks.middlebox_timeout("default") is None
    assert warning.msg.endswith("the middlebox checks (connguard.W004) are skipped.")


def test_invalid_per_alias_middlebox_timeout() -> None:
    with override_settings(CONNGUARD={"MIDDLEBOX_IDLE_TIMEOUT": {"default": "350"}}):
        (warning,) = [m for m in checks.check_settings() if m.id == "connguard.W006"]
    assert "has the invalid value '350'" in warning.msg


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


def test_pool_reads_no_server_limit() -> None:
    if settings.PG_DRIVER != "psycopg":
        pytest.skip("Django's pool needs psycopg 3")
    options = {**SESSION_LIMIT_60["postgresql"], "pool": {"min_size": 0, "max_size": 2}}
    with extra_alias("checked", "postgresql", OPTIONS=options, CONN_MAX_AGE=0) as alias:
        (warning,) = checks.check_database(databases=[alias])
        connections[alias].close_pool()
    assert warning.id == "connguard.W003"
    assert "server_timeout 'auto' reads nothing" in warning.msg
    assert "{'server_timeout': 50}" in warning.hint


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
    assert database_ids(vendor, port="closed") == ["connguard.W005"]


def test_check_database_command() -> None:
    options = limited({"server_timeout": 90}, vendor="postgresql")
    err = io.StringIO()
    with extra_alias("checked", "postgresql", OPTIONS=options):
        call_command("check", "--database", "checked", stdout=io.StringIO(), stderr=err)
    assert "connguard.W003" in err.getvalue()


def test_every_check_id_has_a_docs_section() -> None:
    source = (ROOT / "src/connguard/checks.py").read_text()
    docs = (ROOT / "docs/checks.md").read_text()
    used = set(re.findall(r'id="(connguard\.[EWI]\d{3})"', source))
    documented = set(re.findall(r"^### `(connguard\.[EWI]\d{3})`", docs, re.MULTILINE))
    assert used == documented
    assert len(used) == 9
