"""What an alias's server says about itself, read through the guard's own driver code.

The idle limit that the checks compare is read with ``Driver.server_facts()``,
the very query the guard sends at connect (``server_timeout: "auto"``), on the
raw driver connection: what the checks judge is what the guard will know. It
is the session value, so an ``init_command`` or a libpq ``options`` that
changes it counts.

``manage.py connguard status`` also shows the server's version and a second
limit, which nothing compares: MySQL's ``interactive_timeout`` (the session's
``wait_timeout`` already is it for an interactive client) and PostgreSQL's
``idle_in_transaction_session_timeout`` (inside a transaction the guard never
replaces a connection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connguard._drivers import Driver, driver_for
from connguard._drivers.base import fetch_one

# The server variable behind Driver.server_facts(), by vendor.
IDLE_LIMIT_NAMES = {"mysql": "wait_timeout", "postgresql": "idle_session_timeout"}
# For status only: the version, and the limit that nothing compares.
_DETAILS_SQL = {
    "mysql": "SELECT VERSION(), @@session.interactive_timeout",
    "postgresql": "SELECT current_setting('server_version'), "
    "current_setting('idle_in_transaction_session_timeout')",
}
_DETAIL_NAMES = {
    "mysql": "interactive_timeout",
    "postgresql": "idle_in_transaction_session_timeout",
}


@dataclass(frozen=True)
class ServerInfo:
    """What one alias's server says about itself."""

    idle_limit_name: str
    # The limit that ends a session idle between transactions, in seconds; None = none.
    idle_limit: float | None
    version: str | None = None  # read with details=True only
    other_limits: dict[str, float | None] = field(default_factory=dict)
    read_only: bool | None = None  # the node refuses writes (None: not known)

    @property
    def limits(self) -> dict[str, float | None]:
        """Every idle limit read, by its server variable name."""
        return {self.idle_limit_name: self.idle_limit, **self.other_limits}


def driver_of(connection: Any) -> Driver:
    """The guard's driver code for the wrapper's DB-API module (LookupError if none)."""
    return driver_for(connection.Database)


def read_server(connection: Any, *, details: bool = False) -> ServerInfo:
    """Read the server's idle limit through ``connection``, opening it if need be.

    With ``details``, also the version and the limits nothing compares (status).
    Errors are Django's ``DatabaseError``; ``LookupError`` for a driver that
    connguard does not support.
    """
    driver = driver_of(connection)
    vendor = connection.vendor
    with connection.temporary_connection():
        raw = connection.connection
        with connection.wrap_database_errors:
            limit, read_only = driver.server_facts(raw)
            row = fetch_one(raw, _DETAILS_SQL[vendor]) if details else None
    info = ServerInfo(IDLE_LIMIT_NAMES[vendor], limit, read_only=read_only)
    if row is None:
        return info
    version, other = row
    seconds = driver.seconds(other) if other is not None else 0.0
    return ServerInfo(
        info.idle_limit_name,
        limit,
        str(version),
        {_DETAIL_NAMES[vendor]: seconds if seconds > 0 else None},
        read_only,
    )


def server_version(connection: Any) -> str:
    """The version of the server of an open connection."""
    with connection.wrap_database_errors:
        return str(fetch_one(connection.connection, _DETAILS_SQL[connection.vendor])[0])
