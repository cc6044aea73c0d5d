from __future__ import annotations

import math
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from connguard._drivers import driver_for
from connguard.conf import (
    DEFAULT_FAILOVER_TIMEOUT,
    DEFAULT_VALIDATE_AFTER,
    GuardOptions,
    ProjectSettings,
    parse_options,
    project_settings,
)


def parse(options: object, **settings: object) -> GuardOptions:
    return parse_options("primary", {"OPTIONS": {"connguard": options}, **settings})


def test_defaults_need_no_configuration() -> None:
    assert parse_options("default", {"OPTIONS": {}}) == GuardOptions()
    assert parse_options("default", {}) == GuardOptions()
    assert GuardOptions().validate_after == DEFAULT_VALIDATE_AFTER
    assert GuardOptions().server_timeout == "auto"


def test_valid_values() -> None:
    options = parse(
        {"enabled": False, "validate_after": 0, "socket_check": False, "server_timeout": 240}
    )
    assert options == GuardOptions(
        enabled=False, validate_after=0.0, socket_check=False, server_timeout=240.0
    )
    assert parse({"validate_after": None, "server_timeout": None}).server_timeout is None
    assert parse({"server_timeout": "auto", "validate_after": 2.5}).validate_after == 2.5


def test_failover_options() -> None:
    assert GuardOptions().role == "primary"
    assert GuardOptions().failover_timeout == DEFAULT_FAILOVER_TIMEOUT == 30.0
    assert parse({"role": "replica", "failover_timeout": 0}) == GuardOptions(
        role="replica", failover_timeout=0.0
    )
    assert parse({"failover_timeout": 120}).failover_timeout == 120.0


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"validate_after": -1}, "validate_after"),
        ({"validate_after": "10"}, "validate_after"),
        ({"validate_after": True}, "validate_after"),
        ({"validate_after": float("nan")}, "validate_after"),
        ({"validate_after": float("inf")}, "validate_after"),
        ({"validate_after": math.inf}, "validate_after"),
        ({"validate_after": 10**400}, "validate_after"),  # too large for a float
        ({"server_timeout": float("inf")}, "server_timeout"),
        ({"server_timeout": -math.inf}, "server_timeout"),
        ({"server_timeout": 0}, "server_timeout"),
        ({"server_timeout": "never"}, "server_timeout"),
        ({"socket_check": 1}, "socket_check"),
        ({"enabled": "yes"}, "enabled"),
        ({"role": "writer"}, "role"),
        ({"role": None}, "role"),
        ({"failover_timeout": -1}, "failover_timeout"),
        ({"failover_timeout": None}, "failover_timeout"),
        ({"failover_timeout": float("inf")}, "failover_timeout"),
        ({"failover_timeout": "30"}, "failover_timeout"),
    ],
)
def test_bad_values_name_alias_key_and_what_is_allowed(
    options: dict[str, object], key: str
) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        parse(options)
    message = str(info.value)
    assert "'primary'" in message
    assert repr(key) in message
    assert "use " in message


def test_unknown_keys_list_the_allowed_ones() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"unknown key.*'max_idle'.*allowed keys"):
        parse({"max_idle": 600})


def test_not_a_dict() -> None:
    with pytest.raises(ImproperlyConfigured, match="must be a dict"):
        parse(["validate_after", 5])


def test_health_checks_need_validation() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"'primary'.*CONN_HEALTH_CHECKS"):
        parse({"validate_after": None}, CONN_HEALTH_CHECKS=True)
    assert parse({}, CONN_HEALTH_CHECKS=True).validate_after == DEFAULT_VALIDATE_AFTER


def test_unsupported_driver() -> None:
    import sqlite3

    with pytest.raises(LookupError, match="'sqlite3'"):
        driver_for(sqlite3)


# ##### The project-wide CONNGUARD setting #####


def test_no_connguard_setting() -> None:
    assert project_settings() == ProjectSettings()
    assert project_settings().middlebox_timeout("default") is None


def test_middlebox_timeout_for_every_alias_or_per_alias() -> None:
    with override_settings(CONNGUARD={"MIDDLEBOX_IDLE_TIMEOUT": 350}):
        assert project_settings().middlebox_timeout("postgresql") == 350.0
    with override_settings(
        CONNGUARD={"MIDDLEBOX_IDLE_TIMEOUT": {"default": 240, "postgresql": None}}
    ):
        parsed = project_settings()
    assert parsed.middlebox_timeout("default") == 240.0
    assert parsed.middlebox_timeout("postgresql") is None
    assert parsed.middlebox_timeout("mysql_stock") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"MIDDLEBOX_IDLE_TIMEOUT": math.inf}, r"\['MIDDLEBOX_IDLE_TIMEOUT'\] = inf is invalid"),
        ({"MIDDLEBOX_IDLE_TIMEOUT": 0}, r"\['MIDDLEBOX_IDLE_TIMEOUT'\] = 0 is invalid"),
        (
            {"MIDDLEBOX_IDLE_TIMEOUT": {"default": math.inf}},
            r"CONNGUARD\['MIDDLEBOX_IDLE_TIMEOUT'\]\['default'\] = inf is invalid",
        ),
        (
            {"MIDDLEBOX_IDLE_TIMEOUT": {"replica": 350}},
            r"CONNGUARD\['MIDDLEBOX_IDLE_TIMEOUT'\] names the alias 'replica', which is not in "
            r"DATABASES \(its aliases: 'default', ",
        ),
        ({"middlebox_idle_timeout": 350}, r"unknown key\(s\) 'middlebox_idle_timeout'"),
        ([("MIDDLEBOX_IDLE_TIMEOUT", 350)], "CONNGUARD must be a dict, not list"),
    ],
)
def test_invalid_connguard_setting(value: Any, message: str) -> None:
    with override_settings(CONNGUARD=value), pytest.raises(ImproperlyConfigured, match=message):
        project_settings()
