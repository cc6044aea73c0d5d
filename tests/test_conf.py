from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from connguard._drivers import driver_for
from connguard.conf import DEFAULT_VALIDATE_AFTER, GuardOptions, parse_options


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


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"validate_after": -1}, "validate_after"),
        ({"validate_after": "10"}, "validate_after"),
        ({"validate_after": True}, "validate_after"),
        ({"validate_after": float("nan")}, "validate_after"),
        ({"server_timeout": 0}, "server_timeout"),
        ({"server_timeout": "never"}, "server_timeout"),
        ({"socket_check": 1}, "socket_check"),
        ({"enabled": "yes"}, "enabled"),
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
