"""System checks: ``manage.py check`` and ``manage.py check --database ALIAS``.

Settings checks need no database. The database check runs only for the aliases
given with ``--database``: it reads the server's idle limit through the
alias's own connection, with the guard's own driver code, and compares it
with ``CONN_MAX_AGE`` and the guard's thresholds. Every message's hint ends
with the section of ``docs/checks.md`` that explains it.

One module per concern, none importing this package:

* ``aliases``: what an alias is, from its settings alone;
* ``server``: what its server says (through ``connguard._drivers``);
* ``failures``: why a connection could not be opened (W005);
* ``middlebox``: the ``CONNGUARD`` middlebox timeout (W004, W006);
* ``alias_checks`` and ``server_checks``: the messages of one alias;
* ``registry``: the registered check functions.
"""

from __future__ import annotations

from connguard.checks.alias_checks import settings_messages
from connguard.checks.aliases import GUARDED_ENGINES, VENDORS, AliasInfo, describe
from connguard.checks.failures import ConnectFailure, classify, failure_message
from connguard.checks.middlebox import middlebox_timeout
from connguard.checks.registry import check_database, check_settings, register
from connguard.checks.server import ServerInfo, read_server, server_version
from connguard.checks.server_checks import server_messages

__all__ = [
    "GUARDED_ENGINES",
    "VENDORS",
    "AliasInfo",
    "ConnectFailure",
    "ServerInfo",
    "check_database",
    "check_settings",
    "classify",
    "describe",
    "failure_message",
    "middlebox_timeout",
    "read_server",
    "register",
    "server_messages",
    "server_version",
    "settings_messages",
]
