"""The version matrix: Django 5.2 on Python 3.10-3.13, Django 6.0 and 6.1 on Python 3.12-3.13.

    .venv/bin/python -m nox -l                          # the sessions
    .venv/bin/python -m nox -s fast                     # the fast guard suite, everywhere
    .venv/bin/python -m nox -s "fast(3.12-django6.0)"   # one combination

scripts/test runs the full suite on two combinations (the .venv that
scripts/bootstrap makes: Django 5.2 on python3; and .venv-django6.1: Django 6.1
on Python 3.12); scripts/ci-extra runs ``fast`` on every other combination
(``CONNGUARD_SKIP_DEFAULT=1 nox -s fast``).

The fast guard suite is the guarded backends' own tests and the job API's
(``FAST_SUITE``) on real servers, with mysqlclient + psycopg 3: every check,
replacement, retry rule, interruption, fork and pool scenario, the GIS
recipe, and job boundaries; the Django contract (the private attributes and
methods of Django's that the guard relies on) and the pytest plugin under each
Django's test case classes; not the task-queue workers or the exporters.

Interpreters are found as ``pythonX.Y`` on PATH. A pyenv shim answers only when
its version is selected, so when one does not, every installed pyenv version
of the matrix is selected through ``PYENV_VERSION`` for this run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import nox

MATRIX = {
    "5.2": ["3.10", "3.11", "3.12", "3.13"],
    "6.0": ["3.12", "3.13"],
    "6.1": ["3.12", "3.13"],
}
FAST_SUITE = [
    "tests/backends",
    "tests/test_conf.py",
    "tests/test_disconnects.py",
    "tests/test_retry_rules.py",
    "tests/test_imports.py",
    "tests/test_jobs.py",
    # Django's privates the guard relies on, and the pytest plugin under Django's
    # own test case classes: both change with Django's version.
    "tests/test_django_contract.py",
    "tests/test_pytest_plugin.py",
]
# The combinations scripts/test covers with the full suite.
DEFAULTS = {(f"{sys.version_info.major}.{sys.version_info.minor}", "5.2"), ("3.12", "6.1")}

nox.options.envdir = ".venv-nox"  # ignored by git, like every .venv-*
nox.options.default_venv_backend = "venv"
nox.options.download_python = "never"  # no interpreter downloads: the registries only
nox.options.sessions = ["fast"]


def _answers(command: str) -> bool:
    try:
        return subprocess.run([command, "-c", ""], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _select_pyenv_versions() -> None:
    wanted = sorted({python for pythons in MATRIX.values() for python in pythons})
    if all(_answers(f"python{python}") for python in wanted):
        return
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return  # nox reports the missing interpreters
    listing = subprocess.run(
        [pyenv, "versions", "--bare", "--skip-aliases"], capture_output=True, text=True
    ).stdout.split()
    selected = []
    for python in wanted:
        patches = [v for v in listing if re.fullmatch(re.escape(python) + r"\.\d+", v)]
        if patches:
            selected.append(max(patches, key=lambda v: int(v.rsplit(".", 1)[1])))
    # "system" last, so that interpreters outside pyenv stay reachable.
    os.environ["PYENV_VERSION"] = ":".join([*selected, "system"])


_select_pyenv_versions()


def _combinations() -> list[nox.Param]:
    skip_default = os.environ.get("CONNGUARD_SKIP_DEFAULT") == "1"
    return [
        nox.param(python, django, id=f"{python}-django{django}")
        for django, pythons in MATRIX.items()
        for python in pythons
        if not (skip_default and (python, django) in DEFAULTS)
    ]


def _test_tools() -> list[str]:
    """pytest and pytest-django, pinned as the ``test`` dependency group pins them."""
    group = nox.project.dependency_groups(nox.project.load_toml("pyproject.toml"), "test")
    # Not pytest-randomly (the lock pins a release that needs Python 3.11+): the
    # matrix runs in file order, the full suite in random order.
    return [req for req in group if re.match(r"pytest(-django)?(?![\w-])", req)]


@nox.session
@nox.parametrize(["python", "django"], _combinations())
def fast(session: nox.Session, django: str) -> None:
    """The fast guard suite on one Python and Django combination."""
    # Pinned by the series' lock file (scripts/lock), as scripts/bootstrap pins,
    # or by the one written on this Python where the series has one.
    lock = f"constraints/django{django}-py{session.python}.txt"
    if not os.path.exists(lock):
        lock = f"constraints/django{django}.txt"
    session.install(
        "-c",
        lock,
        f"django~={django}.0",
        "-e",
        ".[mysqlclient,psycopg,pymysql]",
        *_test_tools(),
    )
    session.run("python", "-c", "import django; print('Django', django.get_version())")
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *FAST_SUITE,
        *session.posargs,
        env={"CONNGUARD_TEST_MYSQL_DRIVER": "mysqlclient", "CONNGUARD_TEST_PG_DRIVER": "psycopg"},
    )
