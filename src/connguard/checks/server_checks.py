"""The checks of one alias against its server's idle limit (``check --database``):
W002, W003, and W004 with ``server_timeout: "auto"``."""

from __future__ import annotations

from django.core import checks

from connguard.checks.aliases import AliasInfo
from connguard.checks.hints import hint, key, lasting
from connguard.checks.middlebox import guard_past_middlebox, middlebox_timeout
from connguard.checks.server import ServerInfo


def server_messages(info: AliasInfo, server: ServerInfo) -> list[checks.CheckMessage]:
    """The checks of one alias that compare its settings with its server's limit."""
    if info.active:
        return _guard_against_server(info, server)
    limit, name = server.idle_limit, server.idle_limit_name
    if limit is None or not info.outlives(limit) or info.settings.get("CONN_HEALTH_CHECKS"):
        return []
    return [
        checks.Warning(
            f"{key(info.alias)} keeps a connection {lasting(info.max_age)} (CONN_MAX_AGE), at or "
            f"above the server's idle limit of {limit:g}s ({name}): Django's stock backend then "
            "uses connections the server has closed.",
            hint=hint(
                f"Use a connguard ENGINE, or a CONN_MAX_AGE below {limit:g}s, or "
                "CONN_HEALTH_CHECKS = True (both protect requests only).",
                "connguard.W002",
            ),
            id="connguard.W002",
        )
    ]


def _guard_against_server(info: AliasInfo, server: ServerInfo) -> list[checks.CheckMessage]:
    """W003 and W004 for a guarded alias.

    With ``server_timeout: "auto"`` the guard reads the same limit at connect
    (with Django's pool, once per pooled connection), so it knows it.
    """
    assert info.options is not None
    options, limit, name = info.options, server.idle_limit, server.idle_limit_name
    messages: list[checks.CheckMessage] = []
    problem = None
    if isinstance(options.server_timeout, float) and limit is not None:
        if options.server_timeout >= limit:
            problem = (
                f"OPTIONS['connguard']['server_timeout'] is {options.server_timeout:g}s",
                f"Use 'auto', or declare less than {limit:g}s.",
            )
    elif options.server_timeout is None and limit is not None:
        if options.validate_after is not None and options.validate_after >= limit:
            problem = (
                f"server_timeout is None and validate_after is {options.validate_after:g}s, "
                "so the guard never pings in time",
                "Set server_timeout to 'auto', or validate_after below the limit.",
            )
    if problem is not None:
        messages.append(
            checks.Warning(
                f"The server of {key(info.alias)} ends sessions idle for {limit:g}s ({name}), "
                f"and {problem[0]}.",
                hint=hint(problem[1], "connguard.W003"),
                id="connguard.W003",
            )
        )
    middlebox = middlebox_timeout(info.alias)
    if middlebox is not None and options.server_timeout == "auto":
        messages += guard_past_middlebox(info, middlebox, limit, f"'auto': the server's {name}")
    return messages
