"""The two registered checks: one needs no database, one reads the servers' limits.

``check_settings`` never opens a connection, whatever ``databases`` it is given
(Django 6.1 passes every alias to checks without the ``database`` tag, on a
plain ``check`` too). ``check_database`` carries the ``database`` tag, so Django
runs it only for the aliases of ``check --database`` (and of ``migrate
--database``, which runs the checks for its alias), and on Django 6.1 for every
alias when ``check --tag database`` names the tag without an alias.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.core import checks

from connguard.checks.alias_checks import settings_messages
from connguard.checks.aliases import VENDORS, describe
from connguard.checks.failures import classify, failure_message
from connguard.checks.middlebox import setting_messages
from connguard.checks.server import read_server
from connguard.checks.server_checks import server_messages

if TYPE_CHECKING:
    from django.apps import AppConfig


def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    from django.db import connections

    messages = setting_messages()
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
        if info is None or info.broken or info.vendor not in VENDORS:
            continue  # check_settings reports why it cannot connect
        try:
            server = read_server(connections[alias])
        except DatabaseError as exc:
            messages.append(failure_message(alias, info.settings, classify(exc)))
            continue
        except LookupError:
            continue  # a driver connguard does not support: nothing reads its limit
        messages += server_messages(info, server)
    return messages


def register() -> None:
    checks.register(check_settings)
    checks.register(check_database, checks.Tags.database)
