"""Settings of the soak's worker processes; the soak sets these variables:

SOAK_DATABASES  the DATABASES dict, one alias per route, as JSON
SOAK_REDIS      the throwaway Redis, host:port (queues and reports)

The drivers follow the test suite's variables, so that the soak's smoke test
runs on whichever pair the suite is testing: CONNGUARD_TEST_MYSQL_DRIVER =
mysqlclient (default) | pymysql, CONNGUARD_TEST_PG_DRIVER = psycopg (default) |
psycopg2.
"""

from __future__ import annotations

import json
import os
import sys

if os.environ.get("CONNGUARD_TEST_MYSQL_DRIVER") == "pymysql":
    import pymysql

    pymysql.install_as_MySQLdb()
if os.environ.get("CONNGUARD_TEST_PG_DRIVER") == "psycopg2":
    # Django prefers psycopg 3 when both are installed; hide it.
    sys.modules["psycopg"] = None  # type: ignore[assignment]

SECRET_KEY = "connguard-soak"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = json.loads(os.environ["SOAK_DATABASES"])
REDIS_URL = f"redis://{os.environ['SOAK_REDIS']}/0"
INSTALLED_APPS = ["django.contrib.contenttypes", "connguard", "django_rq", "soak.project"]
RQ_QUEUES = {"soak": {"URL": REDIS_URL}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    # WARNING: retries refused and interruptions, without an INFO line per replacement.
    "loggers": {"connguard": {"handlers": ["stderr"], "level": "WARNING"}},
}
