"""A middlebox between the application and the server that drops idle connections.

Declared in ``CONNGUARD["MIDDLEBOX_IDLE_TIMEOUT"]`` (parsed by ``connguard.conf``):
connguard.W004 when nothing replaces a connection before the middlebox drops
it, connguard.W006 when the setting itself is invalid.
"""

from __future__ import annotations

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from connguard.checks.aliases import AliasInfo
from connguard.checks.hints import below, hint, key, lasting
from connguard.conf import MIDDLEBOX_KEY, PROJECT_SETTING, project_settings

_SETTING = f"{PROJECT_SETTING}[{MIDDLEBOX_KEY!r}]"


def middlebox_timeout(alias: str) -> float | None:
    """The declared idle timeout of the middlebox in front of ``alias``, if any.

    None too when the setting is invalid: connguard.W006 reports that.
    """
    try:
        return project_settings().middlebox_timeout(alias)
    except ImproperlyConfigured:
        return None


def setting_messages() -> list[checks.CheckMessage]:
    """connguard.W006 if ``CONNGUARD`` is invalid."""
    try:
        project_settings()
    except ImproperlyConfigured as exc:
        return [
            checks.Warning(
                f"{exc} The middlebox checks (connguard.W004) are skipped until it is fixed.",
                hint=hint(
                    f"{PROJECT_SETTING} = {{{MIDDLEBOX_KEY!r}: 350}}: seconds > 0, None, or a "
                    "dict of DATABASES alias to those.",
                    "connguard.W006",
                ),
                id="connguard.W006",
            )
        ]
    return []


def guard_past_middlebox(
    info: AliasInfo, middlebox: float, limit: float | None, source: str
) -> list[checks.CheckMessage]:
    """W004 on a guarded alias whose idle limit ``limit`` (from ``source``) is too long."""
    if limit is not None and limit < middlebox:
        return []
    what = (
        f"the guard replaces no connection for idleness ({source})"
        if limit is None
        else f"the guard replaces a connection after {limit:g}s of idleness ({source})"
    )
    return [
        checks.Warning(
            f"A middlebox drops connections of {key(info.alias)} idle for {middlebox:g}s "
            f"({_SETTING}), but {what}: a connection idle longer is pinged through a dropped "
            "path, which fails or hangs.",
            hint=hint(
                "Declare the limit in OPTIONS['connguard'], e.g. "
                f"{{'server_timeout': {below(middlebox):g}}} (below the middlebox's and the "
                "server's limits).",
                "connguard.W004",
            ),
            id="connguard.W004",
        )
    ]


def unguarded_past_middlebox(info: AliasInfo, middlebox: float) -> list[checks.CheckMessage]:
    """W004 on an unguarded alias that keeps a connection longer than the middlebox."""
    if not info.outlives(middlebox):
        return []
    return [
        checks.Warning(
            f"{key(info.alias)} keeps a connection {lasting(info.max_age)} (CONN_MAX_AGE), at "
            f"or above the {middlebox:g}s after which a middlebox drops an idle connection "
            f"({_SETTING}): a connection idle that long fails at its next use, or hangs.",
            hint=hint(
                f"Use a connguard ENGINE; a CONN_MAX_AGE below {middlebox:g}s protects requests "
                "only.",
                "connguard.W004",
            ),
            id="connguard.W004",
        )
    ]
