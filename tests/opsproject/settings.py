"""Settings of the ``python -m django`` subprocesses of tests/test_manage.py; the test sets:

CONNGUARD_OPS_DATABASES  the DATABASES dict, as JSON (the throwaway servers)
CONNGUARD_OPS_HIDE       "postgresql": the PostgreSQL drivers cannot be imported, as
                         in an environment where none is installed

The database drivers come from CONNGUARD_TEST_MYSQL_DRIVER/_PG_DRIVER, as in
the test process: importing tests.settings applies them.
"""

from __future__ import annotations

import json
import os
import sys

from tests.settings import DEFAULT_AUTO_FIELD, SECRET_KEY, TIME_ZONE, USE_TZ

__all__ = ["DEFAULT_AUTO_FIELD", "SECRET_KEY", "TIME_ZONE", "USE_TZ"]

if os.environ.get("CONNGUARD_OPS_HIDE") == "postgresql":
    sys.modules["psycopg"] = None  # type: ignore[assignment]
    sys.modules["psycopg2"] = None  # type: ignore[assignment]

DATABASES = json.loads(os.environ["CONNGUARD_OPS_DATABASES"])
INSTALLED_APPS = ["django.contrib.contenttypes", "connguard", "tests.testapp"]
