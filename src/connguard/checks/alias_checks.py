"""The checks of one alias that need no database: E001, E002, E003, W001, I001,
W004 for a declared idle limit, and W007."""

from __future__ import annotations

from django.core import checks

from connguard.checks.aliases import GUARDED_ENGINES, VENDORS, AliasInfo
from connguard.checks.failover_checks import failover_messages
from connguard.checks.hints import hint, key
from connguard.checks.middlebox import (
    guard_past_middlebox,
    middlebox_timeout,
    unguarded_past_middlebox,
)
from connguard.conf import OPTIONS_KEY

_DRIVERS = {
    "mysql": "mysqlclient, or PyMySQL with pymysql.install_as_MySQLdb()",
    "postgresql": "psycopg (3) or psycopg2",
}


def settings_messages(info: AliasInfo) -> list[checks.CheckMessage]:
    """The checks of one alias that need no database."""
    if info.engine_error is not None:
        return [_engine_error(info)]
    if info.error is not None:
        return [
            checks.Error(
                info.error,
                hint=hint("The connection cannot open until this is fixed.", "connguard.E001"),
                id="connguard.E001",
            )
        ]
    messages: list[checks.CheckMessage] = []
    alias, engine = info.alias, info.settings["ENGINE"]
    if not info.guarded and OPTIONS_KEY in (info.settings.get("OPTIONS") or {}):
        messages.append(
            checks.Error(
                f"{key(alias, 'OPTIONS')} has a 'connguard' key, but ENGINE {engine!r} is not a "
                "connguard backend: the database driver would get the key and refuse to connect.",
                hint=hint("Use a connguard ENGINE or remove the key.", "connguard.E002"),
                id="connguard.E002",
            )
        )
    if info.vendor not in VENDORS:
        return messages
    if not info.guarded:
        messages.append(_unguarded(info))
    if info.active and info.settings.get("CONN_MAX_AGE") == 0 and not info.pooled:
        messages.append(_per_request(info))
    middlebox = middlebox_timeout(alias)
    if middlebox is not None:
        if info.active:
            assert info.options is not None
            declared = info.options.server_timeout
            if declared != "auto":  # "auto" needs the server: see server_checks
                messages += guard_past_middlebox(info, middlebox, declared, "server_timeout")
        else:
            messages += unguarded_past_middlebox(info, middlebox)
    return messages + failover_messages(info)


def _engine_error(info: AliasInfo) -> checks.CheckMessage:
    engine = info.settings["ENGINE"]
    if info.vendor is None:
        advice = f"Use {' or '.join(map(repr, GUARDED_ENGINES.values()))}."
    else:
        advice = f"Install a {info.vendor} driver in this environment: {_DRIVERS[info.vendor]}."
    return checks.Error(
        f"{key(info.alias, 'ENGINE')} = {engine!r} cannot be loaded: {info.engine_error}. "
        "Every use of the alias fails until it can.",
        hint=hint(f"{advice} Or remove the alias from DATABASES.", "connguard.E003"),
        id="connguard.E003",
    )


def _unguarded(info: AliasInfo) -> checks.CheckMessage:
    assert info.vendor is not None
    engine = info.settings["ENGINE"]
    recipe = (
        f"Use ENGINE {GUARDED_ENGINES[info.vendor]!r}"
        if engine.startswith("django.db.backends.")
        else "Add GuardedWrapperMixin to this backend (README, 'Combining the guard')"
    )
    return checks.Warning(
        f"{key(info.alias)} uses ENGINE {engine!r}, which connguard does not guard: workers, "
        "management commands and threads that use it fail once the server, a proxy or a load "
        "balancer closes one of its connections.",
        hint=hint(
            f"{recipe}. To leave the alias unguarded on purpose, use the connguard ENGINE with "
            "OPTIONS['connguard'] = {'enabled': False}, or silence this check with "
            "SILENCED_SYSTEM_CHECKS = ['connguard.W001'].",
            "connguard.W001",
        ),
        id="connguard.W001",
    )


def _per_request(info: AliasInfo) -> checks.CheckMessage:
    """I001. Not for Django's pool, which needs CONN_MAX_AGE = 0 and reuses connections itself."""
    setting = key(info.alias, "CONN_MAX_AGE")
    asgi = "Under ASGI, where Django advises CONN_MAX_AGE = 0, "
    asgi += (
        "use Django's pool instead (OPTIONS['pool'] = True, psycopg 3) or silence connguard.I001."
        if info.vendor == "postgresql"
        else "silence connguard.I001."
    )
    return checks.Info(
        f"{setting} is 0: each request opens and closes a connection of its own.",
        hint=hint(
            f"Under WSGI, set {setting} = None (or a number of seconds): the guard keeps a "
            f"persistent connection valid, and that saves a connect per request. {asgi}",
            "connguard.I001",
        ),
        id="connguard.I001",
    )
