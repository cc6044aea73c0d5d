"""Test settings. The drivers under test come from the environment:

CONNGUARD_TEST_MYSQL_DRIVER = mysqlclient (default) | pymysql
CONNGUARD_TEST_PG_DRIVER = psycopg (default) | psycopg2

HOST/PORT are filled in by the session fixtures in conftest.py, which start
throwaway servers; the dicts below are updated in place.
"""

from __future__ import annotations

from testbed.project.settings import DEFAULT_AUTO_FIELD, TIME_ZONE, USE_TZ, use_drivers
from testbed.project.settings import INSTALLED_APPS as BASE_APPS

__all__ = ["DEFAULT_AUTO_FIELD", "TIME_ZONE", "USE_TZ"]

MYSQL_DRIVER, PG_DRIVER = use_drivers()

SECRET_KEY = "connguard-tests"
INSTALLED_APPS = [*BASE_APPS, "tests.testapp"]


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
