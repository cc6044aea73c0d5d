"""Settings of the soak's worker processes; the soak sets these variables:

SOAK_DATABASES  the DATABASES dict, one alias per route, as JSON
SOAK_REDIS      the throwaway Redis, host:port (queues and reports)

The drivers follow the test suite's variables, so that the soak's smoke test
runs on whichever pair the suite is testing: CONNGUARD_TEST_MYSQL_DRIVER =
mysqlclient (default) | pymysql, CONNGUARD_TEST_PG_DRIVER = psycopg (default) |
psycopg2. The rest is testbed/project/settings.py's, shared with the worker
tests and the demo, but for RQ's queue and the log level.
"""

from __future__ import annotations

import os

from testbed.project import settings as base
from testbed.project.settings import DEFAULT_AUTO_FIELD, TIME_ZONE, USE_TZ

__all__ = ["DEFAULT_AUTO_FIELD", "TIME_ZONE", "USE_TZ"]

base.use_drivers()

SECRET_KEY = "connguard-soak"
DATABASES = base.databases("SOAK_DATABASES")
REDIS_URL = base.redis_url(os.environ["SOAK_REDIS"])
INSTALLED_APPS = [*base.INSTALLED_APPS, "django_rq", "soak.project"]
RQ_QUEUES = {"soak": {"URL": REDIS_URL}}

# WARNING: retries refused and interruptions, without an INFO line per replacement.
LOGGING = base.connguard_logging("WARNING")
