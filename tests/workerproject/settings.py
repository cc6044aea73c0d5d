"""Settings of the worker processes; the test that starts a worker sets these:

CONNGUARD_WORKER_DATABASES  the DATABASES dict, as JSON (the throwaway servers)
CONNGUARD_WORKER_REDIS      the throwaway Redis, host:port
CONNGUARD_WORKER_SETUP      "connguard" (the integration under test) or "stock"

The database drivers come from CONNGUARD_TEST_MYSQL_DRIVER/_PG_DRIVER, as in
the test process. The rest is testbed/project/settings.py's, shared with the soak
and the demo; below is what only these workers need: the queues' apps and
settings, guarded or stock.
"""

from __future__ import annotations

import os

from testbed.project import settings as base
from testbed.project.settings import DEFAULT_AUTO_FIELD, TIME_ZONE, USE_TZ

# The test process's key: django_q checks the signature of the tasks it enqueues.
from tests.settings import SECRET_KEY

__all__ = ["DEFAULT_AUTO_FIELD", "SECRET_KEY", "TIME_ZONE", "USE_TZ"]

base.use_drivers()

DATABASES = base.databases("CONNGUARD_WORKER_DATABASES")
SETUP = os.environ.get("CONNGUARD_WORKER_SETUP", "connguard")
REDIS_HOST, REDIS_PORT = os.environ["CONNGUARD_WORKER_REDIS"].split(":")
REDIS_URL = base.redis_url(os.environ["CONNGUARD_WORKER_REDIS"])
WORKER_GUARDED = SETUP == "connguard"

INSTALLED_APPS = [
    *base.INSTALLED_APPS,
    "tests.testapp",
    "django_rq",
    "django_dramatiq",
    "huey.contrib.djhuey",
    "django_q",
    "tests.workerproject",
]

# django_q's models on MariaDB.
SILENCED_SYSTEM_CHECKS = ["models.W037"]

LOGGING = base.connguard_logging("INFO")

RQ_QUEUES = {"default": {"URL": REDIS_URL}}

DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.redis.RedisBroker",
    "OPTIONS": {"url": REDIS_URL},
    "MIDDLEWARE": [
        *(["connguard.contrib.dramatiq.ConnguardMiddleware"] if WORKER_GUARDED else []),
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Retries",
        "django_dramatiq.middleware.AdminMiddleware",
        *([] if WORKER_GUARDED else ["django_dramatiq.middleware.DbConnectionsMiddleware"]),
    ],
}

HUEY = {
    "name": "connguard-tests",
    "immediate": False,
    "connection": {"host": REDIS_HOST, "port": int(REDIS_PORT)},
    "consumer": {"workers": 1, "worker_type": "thread"},
}

Q_CLUSTER = {
    "name": "default",
    "workers": 1,
    "timeout": 30,
    "retry": 60,
    "poll": 0.1,
    "orm": "default",
    "catch_up": False,
    "broker_class": "connguard.contrib.django_q2.ORM" if WORKER_GUARDED else None,
}
