"""The settings the test bed's Django projects share, and helpers for the rest.

A project's settings module imports the constants it uses by name (Django reads
only the upper-case names of the module) and builds the others with the helpers
from the variables it reads itself; the demo passes the same to
``settings.configure()``. Importing this module changes nothing: the drivers are
applied only by ``use_drivers()``, which the demo never calls.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Every project's apps come after these.
INSTALLED_APPS = ["django.contrib.contenttypes", "connguard"]


def use_drivers() -> tuple[str, str]:
    """Use the drivers the test suite is testing, from its variables, as tests/settings.py does:

    CONNGUARD_TEST_MYSQL_DRIVER = mysqlclient (default) | pymysql
    CONNGUARD_TEST_PG_DRIVER = psycopg (default) | psycopg2

    Returns the two drivers' names.
    """
    mysql = os.environ.get("CONNGUARD_TEST_MYSQL_DRIVER", "mysqlclient")
    pg = os.environ.get("CONNGUARD_TEST_PG_DRIVER", "psycopg")
    if mysql == "pymysql":
        import pymysql

        pymysql.install_as_MySQLdb()
    elif mysql != "mysqlclient":
        raise RuntimeError(f"unknown CONNGUARD_TEST_MYSQL_DRIVER {mysql!r}")
    if pg == "psycopg2":
        # Django prefers psycopg 3 when both are installed; hide it.
        sys.modules["psycopg"] = None  # type: ignore[assignment]
    elif pg != "psycopg":
        raise RuntimeError(f"unknown CONNGUARD_TEST_PG_DRIVER {pg!r}")
    return mysql, pg


def databases(variable: str) -> dict[str, Any]:
    """``DATABASES`` from a variable that holds it as JSON: the process that
    starts the worker builds it for its throwaway servers."""
    result: dict[str, Any] = json.loads(os.environ[variable])
    return result


def redis_url(address: str) -> str:
    """The throwaway Redis at ``host:port``, database 0."""
    return f"redis://{address}/0"


def connguard_logging(
    level: str, *, stream: str = "ext://sys.stderr", fmt: str = "%(message)s"
) -> dict[str, Any]:
    """``LOGGING``: connguard's loggers at ``level`` and above on one stream, the
    rest as Django sets them up."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"connguard": {"format": fmt}},
        "handlers": {
            "connguard": {
                "class": "logging.StreamHandler",
                "stream": stream,
                "formatter": "connguard",
            }
        },
        "loggers": {"connguard": {"handlers": ["connguard"], "level": level}},
    }
