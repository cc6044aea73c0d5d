from __future__ import annotations

import os
import subprocess
import sys


def run_without_settings(code: str) -> str:
    """Run ``code`` in a fresh interpreter with no Django settings; its output."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importable_without_settings() -> None:
    code = (
        "import connguard, connguard.disconnects, connguard.exceptions, connguard.conf, "
        "connguard.checks, connguard.db.backends.base.base; "
        "from django.conf import settings; assert not settings.configured; "
        "print(connguard.stats('default'))"
    )
    assert run_without_settings(code) == "{}"


def test_job_api_loads_on_first_use_and_stays() -> None:
    code = (
        "import sys, connguard; "
        "assert 'connguard.jobs' not in sys.modules; "
        "job = connguard.job; "
        "import connguard.jobs; "
        "assert job is connguard.jobs.job; "
        # Kept as a module attribute: later lookups skip the module __getattr__.
        "assert vars(connguard)['job'] is job; "
        "from connguard import ThreadPoolExecutor, as_jobs; "
        "assert as_jobs is connguard.jobs.as_jobs; "
        "print('ok')"
    )
    assert run_without_settings(code) == "ok"
