"""System checks: ``manage.py check`` and ``manage.py check --database ALIAS``.

Settings checks need no database. The database check runs only for the aliases
given with ``--database`` (Django passes ``databases=None`` otherwise): it reads
the server's idle limits through the alias's own connection and compares them
with ``CONN_MAX_AGE`` and the guard's thresholds. Every message's hint ends
with the section of ``docs/checks.md`` that explains it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from connguard.conf import OPTIONS_KEY, GuardOptions, parse_options

if TYPE_CHECKING:
    from django.apps import AppConfig

VENDORS = ("mysql", "postgresql")
GUARDED_ENGINES = {
    "mysql": "connguard.db.backends.mysql",
    "postgresql": "connguard.db.backends.postgresql",
}
MIDDLEBOX_KEY = "MIDDLEBOX_IDLE_TIMEOUT"
# One query per vendor: the server version, then its idle limits in seconds
# (0 or NULL = none). The session values, as this alias's connections get them.
_SERVER_SQL = {
    "mysql": "SELECT VERSION(), @@session.wait_timeout, @@session.interactive_timeout",
    "postgresql": "SELECT current_setting('server_version'), "
    "(SELECT setting::float8 / 1000 FROM pg_settings WHERE name = 'idle_session_timeout'), "
    "(SELECT setting::float8 / 1000 FROM pg_settings "
    "WHERE name = 'idle_in_transaction_session_timeout')",
}
_LIMIT_NAMES = {
    "mysql": ("wait_timeout", "interactive_timeout"),
    "postgresql": ("idle_session_timeout", "idle_in_transaction_session_timeout"),
}


def _hint(text: str, check_id: str) -> str:
    return f"{text} See docs/checks.md#{check_id.replace('.', '').lower()}"


def _for(seconds: float | None) -> str:
    return "forever" if seconds is None else f"for {seconds:g}s"


def _below(limit: float) -> float:
    """A round value safely under ``limit``, for hints."""
    return float(max(int(limit - 10), int(limit // 2), 1))


@dataclass(frozen=True)
class ServerInfo:
    """What one alias's server says about itself."""

    version: str
    # Each idle limit by its server variable name, in seconds; None = no limit.
    limits: dict[str, float | None]

    @property
    def idle_limit(self) -> float | None:
        """The limit that ends a session idle between transactions."""
        # MySQL's session wait_timeout already is interactive_timeout when the
        # client connected as interactive, so the first name is the one in force.
        return next(iter(self.limits.values()))

    @property
    def idle_limit_name(self) -> str:
        return next(iter(self.limits))


def read_server(connection: Any) -> ServerInfo:
    """Ask the alias's server for its version and idle limits (one query)."""
    with connection.temporary_connection() as cursor:
        cursor.execute(_SERVER_SQL[connection.vendor])
        version, *values = cursor.fetchone()
    limits = {
        name: float(value) if value else None
        for name, value in zip(_LIMIT_NAMES[connection.vendor], values, strict=True)
    }
    return ServerInfo(str(version), limits)


@dataclass(frozen=True)
class AliasInfo:
    """An alias as the checks see it, from its settings alone."""

    alias: str
    settings: Mapping[str, Any]
    vendor: str
    guarded: bool  # the ENGINE's wrapper has the guard (it may be disabled)
    options: GuardOptions | None  # None when unguarded or invalid
    error: str | None  # why OPTIONS["connguard"] is invalid

    @property
    def active(self) -> bool:
        return self.options is not None and self.options.enabled

    @property
    def max_age(self) -> float | None:
        """``CONN_MAX_AGE`` in seconds; None means forever."""
        max_age = self.settings.get("CONN_MAX_AGE", 0)
        return None if max_age is None else float(max_age)

    def outlives(self, limit: float) -> bool:
        """Whether Django's own rules keep a connection for ``limit`` seconds or more.

        ``CONN_MAX_AGE = 0`` closes it at the end of each request: no (what that
        means for workers is connguard.W001's business).
        """
        return self.max_age is None or (self.max_age > 0 and self.max_age >= limit)


def describe(alias: str, settings_dict: Mapping[str, Any]) -> AliasInfo | None:
    """Load the alias's backend class (no connection); None if it cannot load."""
    from django.db.utils import load_backend

    from connguard.db.backends.base.base import GuardedWrapperMixin

    try:
        wrapper_class = load_backend(settings_dict["ENGINE"]).DatabaseWrapper
    except (ImproperlyConfigured, ImportError, KeyError):
        return None  # Django itself reports a bad ENGINE or a missing driver
    guarded = issubclass(wrapper_class, GuardedWrapperMixin)
    options, error = None, None
    if guarded:
        try:
            options = parse_options(alias, settings_dict)
        except ImproperlyConfigured as exc:
            error = str(exc)
    return AliasInfo(alias, settings_dict, wrapper_class.vendor, guarded, options, error)


# ##### The project-wide CONNGUARD setting #####


def _middlebox_setting() -> tuple[Any, str | None]:
    """``CONNGUARD["MIDDLEBOX_IDLE_TIMEOUT"]``, read now, and what is wrong with it."""
    from django.conf import settings

    config = getattr(settings, "CONNGUARD", {})
    if not isinstance(config, Mapping):
        return None, f"CONNGUARD must be a dict, not {type(config).__name__}"
    unknown = sorted(set(config) - {MIDDLEBOX_KEY})
    if unknown:
        return None, f"CONNGUARD has unknown key(s) {', '.join(map(repr, unknown))}"
    value = config.get(MIDDLEBOX_KEY)
    values = value.values() if isinstance(value, Mapping) else [value]
    for item in values:
        if item is not None and (
            isinstance(item, bool) or not isinstance(item, (int, float)) or not item > 0
        ):
            return None, f"CONNGUARD[{MIDDLEBOX_KEY!r}] has the invalid value {item!r}"
    return value, None


def middlebox_timeout(alias: str) -> float | None:
    """The declared idle timeout of the middlebox in front of ``alias``, if any."""
    value, problem = _middlebox_setting()
    if problem is not None:
        return None
    if isinstance(value, Mapping):
        value = value.get(alias)
    return None if value is None else float(value)


# ##### Messages #####


def settings_messages(info: AliasInfo) -> list[checks.CheckMessage]:
    """The checks of one alias that need no database."""
    alias, engine = info.alias, info.settings["ENGINE"]
    if info.error is not None:
        hint = _hint("The connection cannot open until this is fixed.", "connguard.E001")
        return [checks.Error(info.error, hint=hint, id="connguard.E001")]
    messages: list[checks.CheckMessage] = []
    if not info.guarded and OPTIONS_KEY in info.settings.get("OPTIONS", {}):
        messages.append(
            checks.Error(
                f"DATABASES[{alias!r}]['OPTIONS'] has a 'connguard' key, but ENGINE {engine!r} "
                "is not a connguard backend: the database driver would get the key and "
                "refuse to connect.",
                hint=_hint("Use a connguard ENGINE or remove the key.", "connguard.E002"),
                id="connguard.E002",
            )
        )
    if info.vendor not in VENDORS:
        return messages
    if not info.guarded:
        recipe = (
            f"Use ENGINE {GUARDED_ENGINES[info.vendor]!r}"
            if engine.startswith("django.db.backends.")
            else "Add GuardedWrapperMixin to this backend (README, 'Combining the guard')"
        )
        messages.append(
            checks.Warning(
                f"DATABASES[{alias!r}] uses ENGINE {engine!r}, which connguard does not guard: "
                "workers, management commands and threads that use it fail once the server, "
                "a proxy or a load balancer closes one of its connections.",
                hint=_hint(
                    f"{recipe}. To leave the alias unguarded on purpose, use the connguard "
                    "ENGINE with OPTIONS['connguard'] = {'enabled': False}, or silence this "
                    "check with SILENCED_SYSTEM_CHECKS = ['connguard.W001'].",
                    "connguard.W001",
                ),
                id="connguard.W001",
            )
        )
    if info.active and info.settings.get("CONN_MAX_AGE") == 0:
        messages.append(
            checks.Info(
                f"DATABASES[{alias!r}] has CONN_MAX_AGE = 0: each request opens and closes "
                "a connection of its own.",
                hint=_hint(
                    "The guard keeps a persistent connection valid: CONN_MAX_AGE = None "
                    "(or a number of seconds) saves a connect per request.",
                    "connguard.I001",
                ),
                id="connguard.I001",
            )
        )
    middlebox = middlebox_timeout(alias)
    if middlebox is not None:
        if info.active:
            assert info.options is not None
            declared = info.options.server_timeout
            if declared != "auto":  # "auto" needs the server: see server_messages()
                messages += _guard_past_middlebox(info, middlebox, declared, "server_timeout")
        elif info.outlives(middlebox):
            messages.append(
                checks.Warning(
                    f"DATABASES[{alias!r}] keeps a connection {_for(info.max_age)} "
                    f"(CONN_MAX_AGE), at or above the {middlebox:g}s after which a middlebox "
                    f"drops an idle connection (CONNGUARD[{MIDDLEBOX_KEY!r}]): a connection "
                    "idle that long fails at its next use, or hangs.",
                    hint=_hint(
                        "Use a connguard ENGINE; a CONN_MAX_AGE below "
                        f"{middlebox:g}s protects requests only.",
                        "connguard.W004",
                    ),
                    id="connguard.W004",
                )
            )
    return messages


def _guard_past_middlebox(
    info: AliasInfo, middlebox: float, limit: float | None, source: str
) -> list[checks.CheckMessage]:
    if limit is not None and limit < middlebox:
        return []
    what = (
        f"the guard replaces no connection for idleness ({source})"
        if limit is None
        else f"the guard replaces a connection after {limit:g}s of idleness ({source})"
    )
    return [
        checks.Warning(
            f"A middlebox drops connections of DATABASES[{info.alias!r}] idle for "
            f"{middlebox:g}s (CONNGUARD[{MIDDLEBOX_KEY!r}]), but {what}: a connection idle "
            "longer is pinged through a dropped path, which fails or hangs.",
            hint=_hint(
                f"Declare the limit in OPTIONS['connguard'], e.g. {{'server_timeout': "
                f"{_below(middlebox):g}}} (below the middlebox's and the server's limits).",
                "connguard.W004",
            ),
            id="connguard.W004",
        )
    ]


def server_messages(info: AliasInfo, server: ServerInfo) -> list[checks.CheckMessage]:
    """The checks of one alias that compare its settings with its server's limits."""
    limit, name = server.idle_limit, server.idle_limit_name
    if info.active:
        return _guard_against_server(info, server)
    if limit is None or not info.outlives(limit) or info.settings.get("CONN_HEALTH_CHECKS"):
        return []
    return [
        checks.Warning(
            f"DATABASES[{info.alias!r}] keeps a connection {_for(info.max_age)} (CONN_MAX_AGE), "
            f"at or above the server's idle limit of {limit:g}s ({name}): Django's stock "
            "backend then uses connections the server has closed.",
            hint=_hint(
                f"Use a connguard ENGINE, or a CONN_MAX_AGE below {limit:g}s, or "
                "CONN_HEALTH_CHECKS = True (both protect requests only).",
                "connguard.W002",
            ),
            id="connguard.W002",
        )
    ]


def _guard_against_server(info: AliasInfo, server: ServerInfo) -> list[checks.CheckMessage]:
    alias, limit, name = info.alias, server.idle_limit, server.idle_limit_name
    messages: list[checks.CheckMessage] = []
    assert info.options is not None
    options = info.options
    pooled = bool(info.settings.get("OPTIONS", {}).get("pool"))
    problem = None
    if isinstance(options.server_timeout, float) and limit is not None:
        if options.server_timeout >= limit:
            problem = (
                f"OPTIONS['connguard']['server_timeout'] is {options.server_timeout:g}s",
                f"Use 'auto', or declare less than {limit:g}s.",
            )
    elif options.server_timeout == "auto" and pooled and limit is not None:
        problem = (
            "with OPTIONS['pool'], server_timeout 'auto' reads nothing, so the guard "
            "does not know this limit",
            f"Declare it: OPTIONS['connguard'] = {{'server_timeout': {_below(limit):g}}}.",
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
                f"The server of DATABASES[{alias!r}] ends sessions idle for {limit:g}s "
                f"({name}), and {problem[0]}.",
                hint=_hint(problem[1], "connguard.W003"),
                id="connguard.W003",
            )
        )
    middlebox = middlebox_timeout(alias)
    if middlebox is not None and options.server_timeout == "auto":
        known = None if pooled else limit
        messages += _guard_past_middlebox(info, middlebox, known, f"'auto': the server's {name}")
    return messages


def unreachable_message(alias: str, exc: BaseException) -> checks.CheckMessage:
    from connguard._faults import first_line

    return checks.Warning(
        "connguard could not read the idle limits of the server of "
        f"DATABASES[{alias!r}]: {first_line(exc)}",
        hint=_hint(
            f"Check that it is reachable: manage.py connguard status --database {alias}.",
            "connguard.W005",
        ),
        id="connguard.W005",
    )


# ##### Registered checks #####


def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    from django.db import connections

    messages: list[checks.CheckMessage] = []
    _, problem = _middlebox_setting()
    if problem is not None:
        messages.append(
            checks.Warning(
                f"{problem}; the middlebox checks (connguard.W004) are skipped.",
                hint=_hint(
                    f"CONNGUARD = {{{MIDDLEBOX_KEY!r}: 350}}: seconds > 0, None, or a dict "
                    "of alias to seconds.",
                    "connguard.W006",
                ),
                id="connguard.W006",
            )
        )
    for alias, settings_dict in connections.settings.items():
        info = describe(alias, settings_dict)
        if info is not None:
            messages += settings_messages(info)
    return messages


def check_database(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[checks.CheckMessage]:
    from django.db import DatabaseError, connections

    messages: list[checks.CheckMessage] = []
    for alias in databases or ():
        info = describe(alias, connections.settings[alias])
        if info is None or info.error is not None or info.vendor not in VENDORS:
            continue
        try:
            server = read_server(connections[alias])
        except DatabaseError as exc:
            messages.append(unreachable_message(alias, exc))
            continue
        messages += server_messages(info, server)
    return messages


def register() -> None:
    checks.register(check_settings)
    checks.register(check_database, checks.Tags.database)
