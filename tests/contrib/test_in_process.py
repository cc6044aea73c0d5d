"""The integrations' own logic, in this process, with each queue's in-memory parts
(Huey's MemoryHuey, Dramatiq's StubBroker): real queue code, no worker process.
And what importing connguard's job API and integrations costs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from celery import Celery
from django.db import connections
from dramatiq.brokers.stub import StubBroker
from huey import MemoryHuey

import connguard
import connguard.contrib.celery
import connguard.contrib.huey
from connguard.contrib.dramatiq import ConnguardMiddleware
from tests.helpers import select_one

pytestmark = pytest.mark.django_db(transaction=True, databases=["default"])


@pytest.fixture
def zero_max_age() -> Iterator[Any]:
    """CONN_MAX_AGE = 0 on "default", so that a job boundary shows as a close."""
    wrapper = connections["default"]
    saved = wrapper.settings_dict["CONN_MAX_AGE"]
    wrapper.settings_dict["CONN_MAX_AGE"] = 0
    wrapper.close()
    yield wrapper
    wrapper.settings_dict["CONN_MAX_AGE"] = saved


def test_huey_hooks_run_around_executed_tasks_only(zero_max_age: Any) -> None:
    huey = MemoryHuey("connguard", immediate=False)
    connguard.contrib.huey.install(huey)
    seen = []

    @huey.task()
    def task() -> None:
        seen.append(select_one(zero_max_age))

    task()
    huey.execute(huey.dequeue())
    assert seen == [1]
    assert zero_max_age.connection is None  # closed at the end of the task

    # Immediate mode runs the task inside its caller: not a job boundary.
    huey.immediate = True
    select_one(zero_max_age)
    task()
    assert zero_max_age.connection is not None
    assert seen == [1, 1]


def test_dramatiq_middleware_warns_when_not_first(caplog: pytest.LogCaptureFixture) -> None:
    ours = ConnguardMiddleware()
    broker = StubBroker(middleware=[dramatiq.middleware.AgeLimit(), ours])
    with caplog.at_level(logging.WARNING, logger="connguard.contrib.dramatiq"):
        ours.before_worker_boot(broker, None)
    assert "not first" in caplog.text
    caplog.clear()
    broker = StubBroker(middleware=[ConnguardMiddleware(), dramatiq.middleware.AgeLimit()])
    with caplog.at_level(logging.WARNING, logger="connguard.contrib.dramatiq"):
        broker.middleware[0].before_worker_boot(broker, None)
    assert caplog.text == ""
    broker.close()


def test_celery_fixup_needs_django_settings() -> None:
    app = Celery("connguard_in_process", fixups=[])
    assert connguard.contrib.celery.fixup(app, env="CONNGUARD_NO_SUCH_VARIABLE") is None
    app.close()


def run_without_settings(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("module", ["celery", "rq", "dramatiq", "huey"])
def test_contrib_imports_without_django_settings(module: str) -> None:
    run_without_settings(
        f"import connguard.contrib.{module}; "
        "from django.conf import settings; assert not settings.configured"
    )


def test_job_api_loads_lazily() -> None:
    out = run_without_settings(
        "import sys, connguard; assert 'connguard.jobs' not in sys.modules; "
        "assert 'django.db' not in sys.modules; "
        "from connguard import job, as_jobs, ThreadPoolExecutor; "
        "assert 'connguard.jobs' in sys.modules; print(job.__module__)"
    )
    assert out == "connguard.jobs"
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = connguard.no_such_name  # type: ignore[attr-defined]
