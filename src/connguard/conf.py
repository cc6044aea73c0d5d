"""Per-alias settings: ``DATABASES[alias]["OPTIONS"]["connguard"]``.

Parsed once when Django builds the alias's wrapper, never at import time, and
checked strictly: a typo must fail loudly instead of silently disabling a guard.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured

OPTIONS_KEY = "connguard"

# Why 10 seconds: the socket check already catches every connection that the
# server, a proxy or a load balancer closed with FIN or RST, at no cost. A ping is
# only needed for silent failures (a NAT or LB entry that expired without a reset,
# a host that vanished), and those need the path to sit idle for tens of seconds at
# least. A ping after T seconds of idleness costs at most one round trip per T
# seconds per connection, i.e. at most RTT/T of wall time (0.01 % for a 1 ms RTT),
# and nothing at all for a connection used more often than every T seconds.
DEFAULT_VALIDATE_AFTER = 10.0


@dataclass(frozen=True)
class GuardOptions:
    """The guard's settings for one alias. See the settings table in the README."""

    enabled: bool = True
    validate_after: float | None = DEFAULT_VALIDATE_AFTER
    socket_check: bool = True
    server_timeout: float | Literal["auto"] | None = "auto"


_ALLOWED: dict[str, str] = {
    "enabled": "True or False",
    "validate_after": "a number of seconds >= 0, or None to turn idle validation off",
    "socket_check": "True or False",
    "server_timeout": '"auto" (read it from the server at connect), a number of seconds > 0, '
    "or None (no server idle limit)",
}


def _error(alias: str, key: str, value: object) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"DATABASES[{alias!r}]['OPTIONS']['connguard'][{key!r}] = {value!r} is invalid: "
        f"use {_ALLOWED[key]}."
    )


def _seconds(alias: str, key: str, value: object, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _error(alias, key, value)
    number = float(value)
    if math.isnan(number) or number < 0 or (number == 0 and not allow_zero):
        raise _error(alias, key, value)
    return number


def parse_options(alias: str, settings_dict: Mapping[str, Any]) -> GuardOptions:
    """Validate ``OPTIONS["connguard"]`` of one alias and return its options."""
    raw = settings_dict.get("OPTIONS", {}).get(OPTIONS_KEY, {})
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']['connguard'] must be a dict, "
            f"not {type(raw).__name__}."
        )
    unknown = sorted(set(raw) - set(_ALLOWED))
    if unknown:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']['connguard'] has unknown key(s) "
            f"{', '.join(map(repr, unknown))}; allowed keys are "
            f"{', '.join(map(repr, _ALLOWED))}."
        )
    values: dict[str, Any] = {}
    for key in ("enabled", "socket_check"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise _error(alias, key, raw[key])
            values[key] = raw[key]
    if "validate_after" in raw:
        value = raw["validate_after"]
        values["validate_after"] = (
            None if value is None else _seconds(alias, "validate_after", value, allow_zero=True)
        )
    if "server_timeout" in raw:
        value = raw["server_timeout"]
        if value is None or value == "auto":
            values["server_timeout"] = value
        else:
            values["server_timeout"] = _seconds(alias, "server_timeout", value, allow_zero=False)
    options = GuardOptions(**values)
    if options.validate_after is None and settings_dict.get("CONN_HEALTH_CHECKS"):
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}] sets CONN_HEALTH_CHECKS=True, which asks for validation "
            "after idle, but OPTIONS['connguard']['validate_after'] is None, which turns "
            "it off. Remove one of them."
        )
    return options
