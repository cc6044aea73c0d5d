"""Every connguard setting, parsed and validated here.

* Per alias, ``DATABASES[alias]["OPTIONS"]["connguard"]`` (``parse_options()``):
  parsed when Django builds the alias's wrapper; invalid options stop the
  alias's first connection, and ``connguard.E001`` reports them.
* Project-wide, ``CONNGUARD = {...}`` (``project_settings()``): read each time
  the checks ask, so that ``override_settings`` works.

Never read at import time, and checked strictly: a typo must fail loudly
instead of silently disabling a guard or a check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured

OPTIONS_KEY = "connguard"
PROJECT_SETTING = "CONNGUARD"
MIDDLEBOX_KEY = "MIDDLEBOX_IDLE_TIMEOUT"

# Why 10 seconds: the socket check already catches every connection that the
# server, a proxy or a load balancer closed with FIN or RST, at no cost. A ping is
# only needed for silent failures (a NAT or LB entry that expired without a reset,
# a host that vanished), and those need the path to sit idle for tens of seconds at
# least. A ping after T seconds of idleness costs at most one round trip per T
# seconds per connection, i.e. at most RTT/T of wall time (0.01 % for a 1 ms RTT),
# and nothing at all for a connection used more often than every T seconds.
DEFAULT_VALIDATE_AFTER = 10.0

# Why 30 seconds: how long a failover or a restart keeps an alias from taking
# writes. Patroni's defaults (ttl 30, loop_wait 10) promote a replica within
# about 30 s of an unplanned loss, a planned switchover in a few seconds; Aurora
# and RDS Multi-AZ report 30 s and less for most failovers; a restart of a
# small server takes a few seconds. Past 30 s, a request or a short job is
# better off failing with a clear error than waiting longer: raise it for
# longer failovers, and keep it below the task queue's time limit
# (connguard.W005 says when it is not).
DEFAULT_FAILOVER_TIMEOUT = 30.0
ROLES = ("primary", "replica")


@dataclass(frozen=True)
class GuardOptions:
    """The guard's settings for one alias. See the settings table in the README."""

    enabled: bool = True
    validate_after: float | None = DEFAULT_VALIDATE_AFTER
    socket_check: bool = True
    server_timeout: float | Literal["auto"] | None = "auto"
    # "primary": the alias writes, so a read-only node is the wrong node, a
    # failover's leftover; "replica": read-only is what it is meant to be.
    role: Literal["primary", "replica"] = "primary"
    failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT


_ALLOWED: dict[str, str] = {
    "enabled": "True or False",
    "validate_after": "a finite number of seconds >= 0, or None to turn idle validation off",
    "socket_check": "True or False",
    "server_timeout": '"auto" (read it from the server at connect), a finite number of '
    "seconds > 0, or None (no server idle limit)",
    "role": '"primary" (the alias writes: a read-only node is a failover\'s leftover) or '
    '"replica" (read-only is expected)',
    "failover_timeout": "a finite number of seconds >= 0 to wait for a failover or a restart "
    "to end (0: do not wait)",
}


def _error(alias: str, key: str, value: object) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"DATABASES[{alias!r}]['OPTIONS']['connguard'][{key!r}] = {value!r} is invalid: "
        f"use {_ALLOWED[key]}."
    )


def _number(value: object, *, allow_zero: bool) -> float | None:
    """``value`` as seconds if it is a finite number in range, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        return None
    return number


def _seconds(alias: str, key: str, value: object, *, allow_zero: bool) -> float:
    number = _number(value, allow_zero=allow_zero)
    if number is None:
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
    if "role" in raw:
        if raw["role"] not in ROLES:
            raise _error(alias, "role", raw["role"])
        values["role"] = raw["role"]
    if "failover_timeout" in raw:
        value = raw["failover_timeout"]
        values["failover_timeout"] = _seconds(alias, "failover_timeout", value, allow_zero=True)
    options = GuardOptions(**values)
    if options.validate_after is None and settings_dict.get("CONN_HEALTH_CHECKS"):
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}] sets CONN_HEALTH_CHECKS=True, which asks for validation "
            "after idle, but OPTIONS['connguard']['validate_after'] is None, which turns "
            "it off. Remove one of them."
        )
    return options


# ##### The project-wide CONNGUARD setting #####


@dataclass(frozen=True)
class ProjectSettings:
    """``settings.CONNGUARD``, parsed. See docs/checks.md, "The CONNGUARD setting"."""

    # One timeout for every alias, or None for none.
    middlebox_idle_timeout: float | None = None
    # Per alias, when the setting is a dict; an alias not in it has none.
    middlebox_idle_timeouts: Mapping[str, float | None] | None = None

    def middlebox_timeout(self, alias: str) -> float | None:
        """The declared idle timeout of the middlebox in front of ``alias``, if any."""
        if self.middlebox_idle_timeouts is not None:
            return self.middlebox_idle_timeouts.get(alias)
        return self.middlebox_idle_timeout


_MIDDLEBOX_ALLOWED = "a finite number of seconds > 0, or None"


def _middlebox_seconds(value: object, alias: str | None) -> float | None:
    """One middlebox timeout: of every alias (``alias`` None), or of one alias."""
    if value is None:
        return None
    number = _number(value, allow_zero=False)
    if number is None:
        key = f"{PROJECT_SETTING}[{MIDDLEBOX_KEY!r}]"
        allowed = _MIDDLEBOX_ALLOWED
        if alias is None:
            allowed += ", or a dict of DATABASES alias to those"
        else:
            key += f"[{alias!r}]"
        raise ImproperlyConfigured(f"{key} = {value!r} is invalid: use {allowed}.")
    return number


def project_settings() -> ProjectSettings:
    """Parse ``settings.CONNGUARD`` now; raise ``ImproperlyConfigured`` if it is invalid."""
    from django.conf import settings
    from django.db import connections

    config = getattr(settings, PROJECT_SETTING, {})
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured(
            f"{PROJECT_SETTING} must be a dict, not {type(config).__name__}: for example "
            f"{PROJECT_SETTING} = {{{MIDDLEBOX_KEY!r}: 350}}."
        )
    unknown = sorted(map(repr, set(config) - {MIDDLEBOX_KEY}))
    if unknown:
        raise ImproperlyConfigured(
            f"{PROJECT_SETTING} has unknown key(s) {', '.join(unknown)}; the allowed key is "
            f"{MIDDLEBOX_KEY!r}."
        )
    value = config.get(MIDDLEBOX_KEY)
    if not isinstance(value, Mapping):
        return ProjectSettings(middlebox_idle_timeout=_middlebox_seconds(value, None))
    timeouts: dict[str, float | None] = {}
    for alias, item in value.items():
        if alias not in connections.settings:
            raise ImproperlyConfigured(
                f"{PROJECT_SETTING}[{MIDDLEBOX_KEY!r}] names the alias {alias!r}, which is not "
                f"in DATABASES (its aliases: {', '.join(map(repr, connections.settings))})."
            )
        timeouts[alias] = _middlebox_seconds(item, alias)
    return ProjectSettings(middlebox_idle_timeouts=timeouts)
