"""Why a connection to an alias's server could not be opened, in words (connguard.W005).

The drivers say it in four dialects: MySQL error codes (mysqlclient, PyMySQL),
and libpq's messages (psycopg 3, psycopg2), which carry no SQLSTATE when the
connection itself fails. Each kind of failure points at the setting to fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core import checks

from connguard.checks.hints import hint, key, where

AUTHENTICATION = "authentication"
UNKNOWN_DATABASE = "unknown_database"
REFUSED = "refused"
TIMEOUT = "timeout"
UNKNOWN_HOST = "unknown_host"
TOO_MANY_CONNECTIONS = "too_many_connections"
OTHER = "error"

SUMMARIES = {
    AUTHENTICATION: "the server refused the login (authentication failed)",
    UNKNOWN_DATABASE: "the database does not exist on the server",
    REFUSED: "the connection was refused (no server listens there, or a firewall rejects it)",
    TIMEOUT: "the connection timed out",
    UNKNOWN_HOST: "the host name could not be resolved",
    TOO_MANY_CONNECTIONS: "the server has no connection slot left",
    OTHER: "the connection failed",
}

# MySQL/MariaDB client and server error codes.
_MYSQL_CODES = {
    1044: AUTHENTICATION,  # ER_DBACCESS_DENIED_ERROR
    1045: AUTHENTICATION,  # ER_ACCESS_DENIED_ERROR
    1130: AUTHENTICATION,  # ER_HOST_NOT_PRIVILEGED
    1251: AUTHENTICATION,  # ER_NOT_SUPPORTED_AUTH_MODE
    1698: AUTHENTICATION,  # ER_ACCESS_DENIED_NO_PASSWORD_ERROR
    1049: UNKNOWN_DATABASE,  # ER_BAD_DB_ERROR
    1040: TOO_MANY_CONNECTIONS,  # ER_CON_COUNT_ERROR
    1203: TOO_MANY_CONNECTIONS,  # ER_TOO_MANY_USER_CONNECTIONS
    2005: UNKNOWN_HOST,  # CR_UNKNOWN_HOST
}
# Connecting to the socket failed (CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR), or
# the handshake was cut (CR_SERVER_LOST): the errno in the text tells why.
_MYSQL_SOCKET_CODES = {2002: REFUSED, 2003: REFUSED, 2013: OTHER}
_MYSQL_ERRNOS = (
    (UNKNOWN_HOST, r"\(-[23]\)|name or service not known|nodename nor servname"),
    (TIMEOUT, r"timed out|system error: 110\b|\(110\)"),
    (REFUSED, r"connection refused|\(111\)|\(115\)"),
)
_SQLSTATES = {
    "28000": AUTHENTICATION,
    "28P01": AUTHENTICATION,
    "3D000": UNKNOWN_DATABASE,
    "53300": TOO_MANY_CONNECTIONS,
}
# libpq's messages. In this order: libpq may try several addresses and list
# every failure, and an answer from the server says more than a refused address.
_LIBPQ_MESSAGES = (
    (
        AUTHENTICATION,
        r"authentication failed|no pg_hba\.conf entry|role \".*\" does not exist",
    ),
    (UNKNOWN_DATABASE, r"database \".*\" does not exist"),
    (TOO_MANY_CONNECTIONS, r"too many clients|remaining connection slots"),
    (UNKNOWN_HOST, r"could not translate host name|failed to resolve host"),
    (TIMEOUT, r"timeout expired|timed out"),
    (REFUSED, r"connection refused"),
)


@dataclass(frozen=True)
class ConnectFailure:
    kind: str  # one of the constants above
    error: str  # the driver's error: its class and the first line of its message

    @property
    def summary(self) -> str:
        return SUMMARIES[self.kind]


def classify(exc: BaseException) -> ConnectFailure:
    """What went wrong when a connection failed with ``exc``."""
    from connguard._faults import first_line

    cause = exc.__cause__ or exc
    return ConnectFailure(_kind(cause), first_line(cause))


def _kind(cause: BaseException) -> str:
    from connguard._drivers import driver_for_error

    driver = driver_for_error(cause)
    code = driver.error_code(cause) if driver is not None else None
    text = " ".join(str(cause).split()).lower()
    if isinstance(code, int):  # MySQL/MariaDB
        if code in _MYSQL_CODES:
            return _MYSQL_CODES[code]
        if code in _MYSQL_SOCKET_CODES:
            return _first_match(_MYSQL_ERRNOS, text) or _MYSQL_SOCKET_CODES[code]
        return OTHER
    if code in _SQLSTATES:
        return _SQLSTATES[code]
    return _first_match(_LIBPQ_MESSAGES, text) or OTHER


def _first_match(patterns: tuple[tuple[str, str], ...], text: str) -> str | None:
    return next((kind for kind, pattern in patterns if re.search(pattern, text)), None)


def _advice(alias: str, settings_dict: Mapping[str, Any], kind: str) -> str:
    address = f"{key(alias, 'HOST')} and {key(alias, 'PORT')} ({where(settings_dict)})"
    return {
        AUTHENTICATION: f"Check {key(alias, 'USER')} and {key(alias, 'PASSWORD')}, and that "
        "this user may connect from this host.",
        UNKNOWN_DATABASE: f"Check {key(alias, 'NAME')} ({settings_dict.get('NAME')!r}), or "
        "create that database.",
        REFUSED: f"Check {address}: is the server running there, and does a firewall let "
        "this host in?",
        TIMEOUT: f"Check that {address} can be reached from this host: a firewall or a "
        "security group that drops packets looks like this.",
        UNKNOWN_HOST: f"Check {key(alias, 'HOST')} ({settings_dict.get('HOST')!r}).",
        TOO_MANY_CONNECTIONS: "Retry later, or raise the server's max_connections, or keep "
        "fewer connections open (fewer workers, smaller pools).",
        OTHER: "The driver's error above says why.",
    }[kind]


def failure_message(
    alias: str, settings_dict: Mapping[str, Any], failure: ConnectFailure
) -> checks.CheckMessage:
    return checks.Warning(
        f"connguard could not read the idle limits of the server of {key(alias)}: "
        f"{failure.summary}. The driver said: {failure.error}",
        hint=hint(_advice(alias, settings_dict, failure.kind), "connguard.W005"),
        id="connguard.W005",
    )
