"""Test settings. The drivers under test come from the environment:

CONNGUARD_TEST_MYSQL_DRIVER = mysqlclient (default) | pymysql
CONNGUARD_TEST_PG_DRIVER = psycopg (default) | psycopg2

HOST/PORT are filled in by the session fixtures in conftest.py, which start
throwaway servers; the dicts below are updated in place.
"""

from __future__ import annotations

import os
import sys

MYSQL_DRIVER = os.environ.get("CONNGUARD_TEST_MYSQL_DRIVER", "mysqlclient")
PG_DRIVER = os.environ.get("CONNGUARD_TEST_PG_DRIVER", "psycopg")

if MYSQL_DRIVER == "pymysql":
    import pymysql

    pymysql.install_as_MySQLdb()
elif MYSQL_DRIVER != "mysqlclient":
    raise RuntimeError(f"unknown CONNGUARD_TEST_MYSQL_DRIVER {MYSQL_DRIVER!r}")

if PG_DRIVER == "psycopg2":
    # Django prefers psycopg 3 when both are installed; hide it.
    sys.modules["psycopg"] = None  # type: ignore[assignment]
elif PG_DRIVER != "psycopg":
    raise RuntimeError(f"unknown CONNGUARD_TEST_PG_DRIVER {PG_DRIVER!r}")

SECRET_KEY = "connguard-tests"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django.contrib.contenttypes", "connguard", "tests.testapp"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def _alias(engine: str, **extra: object) -> dict[str, object]:
    # Placeholders: conftest.py fills in the real server's address.
    return {"ENGINE": engine, "NAME": "connguard", "HOST": "127.0.0.1", "PORT": "1", **extra}


DATABASES = {
    "default": _alias("connguard.db.backends.mysql", CONN_MAX_AGE=None),
    "mysql_stock": _alias(
        "django.db.backends.mysql", CONN_MAX_AGE=None, TEST={"MIRROR": "default"}
    ),
    "postgresql": _alias("connguard.db.backends.postgresql", CONN_MAX_AGE=None),
    "postgresql_stock": _alias(
        "django.db.backends.postgresql", CONN_MAX_AGE=None, TEST={"MIRROR": "postgresql"}
    ),
}
MYSQL_ALIASES = ("default", "mysql_stock")
PG_ALIASES = ("postgresql", "postgresql_stock")
