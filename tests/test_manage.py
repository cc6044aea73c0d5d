"""``python -m django`` (what ``manage.py`` runs) in a subprocess, on settings that
must not crash Django's setup: invalid guard options, a missing driver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import django
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Django 6.1 runs the model checks against every alias, and those on MySQL
# connect (or, for an alias whose ENGINE cannot load, build its wrapper): an
# alias that cannot connect then stops a plain `check` with a traceback from
# Django's own checks, before connguard's are reported.
DJANGO_CONNECTS_IN_CHECKS = django.VERSION >= (6, 1)


def manage(
    databases: dict[str, Any], *args: str, hide: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.opsproject.settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "CONNGUARD_OPS_DATABASES": json.dumps(databases),
    }
    if hide is not None:
        env["CONNGUARD_OPS_HIDE"] = hide
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def guarded(servers: dict[str, Any], vendor: str, **options: Any) -> dict[str, Any]:
    extra = {"OPTIONS": {"connguard": options}} if options else {}
    return dict(servers[vendor].settings(CONN_MAX_AGE=None, **extra))


# ##### Invalid OPTIONS["connguard"] #####


def invalid(servers: dict[str, Any], bad_mysql: bool = True) -> dict[str, Any]:
    """``default`` (MariaDB) and ``replica`` (PostgreSQL), each with a bad option."""
    return {
        "default": guarded(servers, "mysql", **({"validate_after": -1} if bad_mysql else {})),
        "replica": guarded(servers, "postgresql", validate_after=float("inf")),
    }


E001_DEFAULT = (
    "(connguard.E001) DATABASES['default']['OPTIONS']['connguard']['validate_after'] = -1 "
    "is invalid: use a finite number of seconds >= 0"
)
E001_REPLICA = (
    "(connguard.E001) DATABASES['replica']['OPTIONS']['connguard']['validate_after'] = inf "
    "is invalid"
)


def test_check_reports_every_invalid_alias(servers: dict[str, Any]) -> None:
    result = manage(invalid(servers, bad_mysql=not DJANGO_CONNECTS_IN_CHECKS), "check")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert E001_REPLICA in result.stderr
    if not DJANGO_CONNECTS_IN_CHECKS:
        assert E001_DEFAULT in result.stderr
        assert "System check identified 2 issues" in result.stderr


@pytest.mark.skipif(not DJANGO_CONNECTS_IN_CHECKS, reason="Django 6.1's model checks")
def test_django_61_model_checks_connect_to_mysql(servers: dict[str, Any]) -> None:
    """Django's own check stops, with connguard's message: documented in docs/checks.md."""
    result = manage(invalid(servers), "check")
    assert result.returncode == 1
    assert result.stderr.rstrip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: "
        + E001_DEFAULT.removeprefix("(connguard.E001) ")
        + ", or None to turn idle validation off."
    )


def test_setup_and_commands_without_checks_run(servers: dict[str, Any]) -> None:
    databases = invalid(servers)
    shell = manage(databases, "shell", "-c", "from tests.testapp.models import Job; print('ok')")
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.splitlines()[-1] == "ok"
    # A command that runs the checks stops with their report, not a traceback.
    if not DJANGO_CONNECTS_IN_CHECKS:
        command = manage(databases, "makemigrations", "--check", "--dry-run")
        assert command.returncode == 1
        assert "Traceback" not in command.stderr, command.stderr
        assert E001_DEFAULT in command.stderr and E001_REPLICA in command.stderr


def test_invalid_options_still_stop_the_connection(servers: dict[str, Any]) -> None:
    code = "from django.db import connection; connection.ensure_connection()"
    result = manage(invalid(servers), "shell", "-c", code)
    assert result.returncode == 1
    assert (
        result.stderr.rstrip()
        .splitlines()[-1]
        .startswith(
            "django.core.exceptions.ImproperlyConfigured: DATABASES['default']['OPTIONS']"
            "['connguard']['validate_after'] = -1 is invalid"
        )
    )


def test_status_runs(servers: dict[str, Any]) -> None:
    result = manage(invalid(servers), "connguard", "status")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert (
        "default: mysql, ENGINE connguard.db.backends.mysql (invalid guard options), "
        f"driver {os.environ.get('CONNGUARD_TEST_MYSQL_DRIVER', 'mysqlclient')}"
    ) in text
    assert text.count("verdict      error") == 2
    assert E001_DEFAULT.replace("(connguard.E001)", "connguard.E001 (error):") in text
    report = json.loads(manage(invalid(servers), "connguard", "status", "--json").stdout)
    for alias in ("default", "replica"):
        item = report["aliases"][alias]
        assert item["server"] is None and item["verdict"] == "error"
        assert [r["id"] for r in item["recommendations"]] == ["connguard.E001"]


# ##### A guarded alias whose driver is missing #####


def missing_driver(servers: dict[str, Any]) -> dict[str, Any]:
    return {"default": guarded(servers, "mysql"), "replica": guarded(servers, "postgresql")}


E003 = (
    "(connguard.E003) DATABASES['replica']['ENGINE'] = 'connguard.db.backends.postgresql' "
    "cannot be loaded: Error loading psycopg2 or psycopg module. Every use of the alias fails "
    "until it can."
)


def test_check_reports_a_missing_driver(servers: dict[str, Any]) -> None:
    result = manage(missing_driver(servers), "check", hide="postgresql")
    assert result.returncode == 1
    if DJANGO_CONNECTS_IN_CHECKS:
        # Django's model checks build every alias's wrapper, and stop first.
        assert result.stderr.rstrip().endswith("Error loading psycopg2 or psycopg module")
        return
    assert "Traceback" not in result.stderr, result.stderr
    assert E003 in result.stderr
    assert "Install a postgresql driver in this environment: psycopg (3) or psycopg2." in (
        result.stderr
    )


def test_status_reports_a_missing_driver(servers: dict[str, Any]) -> None:
    result = manage(missing_driver(servers), "connguard", "status", hide="postgresql")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "replica: postgresql, ENGINE connguard.db.backends.postgresql cannot be loaded\n" in (
        text
    )
    assert E003.replace("(connguard.E003)", "connguard.E003 (error):") in text
    assert "replica: None" not in text and "driver -" not in text
    data = manage(missing_driver(servers), "connguard", "status", "--json", hide="postgresql")
    replica = json.loads(data.stdout)["aliases"]["replica"]
    assert (replica["vendor"], replica["driver"], replica["verdict"]) == (
        "postgresql",
        None,
        "error",
    )
    assert [r["id"] for r in replica["recommendations"]] == ["connguard.E003"]


@pytest.mark.parametrize("vendor", ["mysql", "postgresql"])
def test_the_wrapper_builds_and_its_first_connect_raises(
    vendor: str, servers: Any, django_db_blocker: Any
) -> None:
    """In process: Django builds the wrapper; connecting raises before anything opens."""
    from django.core.exceptions import ImproperlyConfigured
    from django.db.backends.signals import connection_created

    from tests.helpers import make_wrapper

    opened: list[object] = []

    def note(sender: object, connection: object, **kwargs: object) -> None:
        opened.append(connection)

    wrapper = make_wrapper(vendor, alias="bad", OPTIONS={"connguard": {"validate_afer": 5}})
    connection_created.connect(note)
    try:
        with django_db_blocker.unblock():
            for _ in range(2):  # every time, not only the first
                with pytest.raises(ImproperlyConfigured, match=r"\['connguard'\] has unknown key"):
                    wrapper.ensure_connection()
    finally:
        connection_created.disconnect(note)
    assert wrapper.connection is None and opened == []
