"""``manage.py connguard status``: one report per alias, as a dict or as text.

The report holds no password and no DSN: only the host, the port and the
database name. The connection and the counters are those of this process; the
server is read through a connection of the command's own, which leaves them as
they were.
"""

from __future__ import annotations

from typing import Any

from django.core import checks as django_checks

from connguard import _faults, _stats, checks
from connguard._events import ALL_STATS

REPORT_VERSION = 1
# Every counter of docs/stats-and-logging.md: always present in "stats", and in
# the text, 0 when it never moved, so that both have a fixed shape.
STATS_KEYS = ALL_STATS
_CONNECTION_KEYS = ("connected", "dead", "age", "idle", "server_idle_limit", "role", "node")


def _level(message: django_checks.CheckMessage) -> str:
    if message.level >= django_checks.ERROR:
        return "error"
    return "warning" if message.level >= django_checks.WARNING else "info"


def _driver(wrapper: Any) -> str:
    from connguard._drivers import driver_for

    try:
        return driver_for(wrapper.Database).name
    except LookupError:
        return str(wrapper.Database.__name__).split(".", 1)[0]


def alias_report(alias: str) -> dict[str, Any]:
    """Everything ``status`` says about one alias."""
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections

    settings_dict = connections.settings[alias]
    info = checks.describe(alias, settings_dict)
    report: dict[str, Any] = {
        "alias": alias,
        "engine": settings_dict["ENGINE"],
        "vendor": info.vendor if info else None,
        "guarded": bool(info and info.active),
        "driver": None,
        "host": settings_dict.get("HOST") or None,
        "port": str(settings_dict.get("PORT") or "") or None,
        "database": settings_dict.get("NAME") or None,
        "settings": {
            "CONN_MAX_AGE": settings_dict.get("CONN_MAX_AGE"),
            "CONN_HEALTH_CHECKS": settings_dict.get("CONN_HEALTH_CHECKS"),
            "connguard": dict(vars(info.options)) if info and info.options else None,
        },
        "connection": dict.fromkeys(_CONNECTION_KEYS),
        "stats": {key: 0 for key in STATS_KEYS} | _stats.stats(alias),
        "server": None,
        "verdict": "ok",
        "recommendations": [],
    }
    messages = checks.settings_messages(info) if info else []
    try:
        wrapper = connections[alias]
    except ImproperlyConfigured as exc:
        if not messages:
            messages = [django_checks.Error(" ".join(str(exc).split()))]
        wrapper = None
    if wrapper is not None:
        report["driver"] = _driver(wrapper)
        if hasattr(wrapper, "connguard_status") and not (info and info.error):
            state = wrapper.connguard_status()
            report["connection"] = {key: state[key] for key in _CONNECTION_KEYS}
        else:
            report["connection"]["connected"] = wrapper.connection is not None
        if info is not None and info.vendor in checks.VENDORS and not info.broken:
            messages += _read_server(report, info)
    levels = {_level(message) for message in messages}
    if "error" in levels:
        report["verdict"] = "error"
    elif "warning" in levels and report["verdict"] == "ok":
        report["verdict"] = "warning"
    report["recommendations"] = [
        {"id": m.id, "level": _level(m), "message": m.msg, "hint": m.hint} for m in messages
    ]
    return report


def _read_server(report: dict[str, Any], info: checks.AliasInfo) -> list[Any]:
    """Fill in report["server"]; return the messages of the database checks."""
    from django.db import DatabaseError

    # A connection of its own: the process's connection stays as it was.
    probe = _faults.open_wrapper(dict(info.settings), f"{info.alias}:connguard-status", pool=False)
    try:
        server = checks.read_server(probe, details=True)
    except DatabaseError as exc:
        failure = checks.classify(exc)
        report["server"] = {
            "reachable": False,
            "version": None,
            "role": None,
            "idle_limits": {},
            "failure": {"kind": failure.kind, "summary": failure.summary, "error": failure.error},
        }
        report["verdict"] = "error"
        return [checks.failure_message(info.alias, info.settings, failure)]
    except LookupError:
        return []  # a driver connguard does not support: nothing reads its limits
    report["server"] = {
        "reachable": True,
        "version": server.version,
        # What the node is now: "read-write", "read-only" (a standby, or a demoted
        # primary: on an alias meant to write, the guard moves off it), or None.
        "role": None if server.read_only is None else _ROLES[server.read_only],
        "idle_limits": server.limits,
        "failure": None,
    }
    return checks.server_messages(info, server)


_ROLES = {True: "read-only", False: "read-write"}


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _limit(value: float | None) -> str:
    return "none" if value is None else f"{value:g}s"


def _wrapped(label: str, items: list[str], width: int = 100) -> list[str]:
    """``label`` and the items, comma-separated, over as many lines as need be."""
    lines, line = [], label
    for index, item in enumerate(items):
        text = item + ("," if index < len(items) - 1 else "")
        if line != label and len(line) + 1 + len(text) > width:
            lines.append(line)
            line = " " * len(label) + text
        else:
            line += ("" if line == label else " ") + text
    lines.append(line)
    return lines


def render(report: dict[str, Any]) -> list[str]:
    """The text form of one alias's report."""
    vendor = f"{report['vendor']}, " if report["vendor"] else ""
    if report["driver"] is None:
        head = f"ENGINE {report['engine']} cannot be loaded"
    else:
        if any(item["id"] == "connguard.E001" for item in report["recommendations"]):
            guard = "invalid guard options"
        else:
            guard = "guarded" if report["guarded"] else "not guarded"
        head = f"ENGINE {report['engine']} ({guard}), driver {report['driver']}"
    lines = [f"{report['alias']}: {vendor}{head}"]
    server = report["server"]
    where = f"{report['host'] or 'local socket'}:{report['port'] or 'default port'}"
    database = f"database {report['database']!r}"
    if server is None:
        lines.append(f"  server       {where}, {database}")
    elif not server["reachable"]:
        summary = server["failure"]["summary"]
        lines.append(f"  server       not read at {where}, {database}: {summary}")
    else:
        role = f", {server['role']}" if server["role"] else ""
        lines.append(f"  server       {server['version']} at {where}, {database}{role}")
        limits = ", ".join(f"{k} {_limit(v)}" for k, v in server["idle_limits"].items())
        lines.append(f"  idle limits  {limits or '-'}")
    settings = report["settings"]
    lines.append(
        f"  settings     CONN_MAX_AGE {settings['CONN_MAX_AGE']!r}, "
        f"CONN_HEALTH_CHECKS {settings['CONN_HEALTH_CHECKS']!r}"
    )
    options = settings["connguard"]
    if options is not None:
        lines.append("  guard        " + ", ".join(f"{k} {v!r}" for k, v in options.items()))
    connection = report["connection"]
    if connection["connected"]:
        dead = ", dead (replaced at its next use)" if connection["dead"] else ""
        lines.append(
            f"  connection   open in this process: age {_seconds(connection['age'])}, "
            f"idle {_seconds(connection['idle'])}{dead}"
        )
    else:
        lines.append("  connection   not open in this process")
    lines += _wrapped("  counters     ", [f"{k} {v}" for k, v in report["stats"].items()])
    lines.append(f"  verdict      {report['verdict']}")
    for item in report["recommendations"]:
        lines.append(f"    {item['id']} ({item['level']}): {item['message']}")
        if item["hint"]:
            lines.append(f"      {item['hint']}")
    return lines
