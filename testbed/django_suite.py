"""Django's own test suite on the stock backends and on connguard's, side by side.

    scripts/django-suite                                  # 5.2.19 and 6.1.3, every configuration
    scripts/django-suite --django 6.1.3 --vendor mysql --conn-max-age 0 --apps backends
    scripts/django-suite --stored                         # the table again, from the last runs
    PYTHONPATH=/elsewhere/src scripts/django-suite ...    # another connguard tree (a baseline)

For each Django version: its sdist (``pip download``, cached), a virtualenv in
``.venv-djsuite-<version>`` with that Django, the drivers and connguard
(editable), and then ``tests/runtests.py --parallel=1 -v 2`` once per vendor x
ENGINE (stock, guarded) x CONN_MAX_AGE, one at a time, against throwaway
servers. Each test's outcome is parsed from the -v 2 output; the exit status is
1 when a test passes on stock but not on guarded, 2 when a run did not finish.
Logs, settings and results: ``.venv-djsuite-<version>/results/`` (the last run
of each configuration, which ``--stored`` reports).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from testbed.servers import MariaDBServer, PostgreSQLServer, ServerError

ROOT = Path(__file__).resolve().parent.parent
APPS = (
    "backends transactions transaction_hooks select_for_update db_utils handlers "
    "multiple_database queries async servers test_utils"
).split()
EXTRAS = "mysqlclient,pymysql,psycopg,psycopg2"  # the project's driver extras
RUNTESTS_NEEDS = ["asgiref", "sqlparse", "tblib"]  # what the apps above import
PYTHON = {"5.2": "3.12", "6.0": "3.12", "6.1": "3.12"}  # one interpreter for every run
RUNTESTS_FLAGS = ["--parallel=1", "-v", "2", "--noinput"]
ENGINES = {"stock": "django.db.backends.{}", "guarded": "connguard.db.backends.{}"}
STATUSES = {"expected failure": "xfail", "unexpected success": "xpass"}  # the rest as printed
COLUMNS = ["ok", "FAIL", "ERROR", "skip", "xfail", "xpass"]
RANK = {"ERROR": 3, "FAIL": 2, "xpass": 1}
TEST = re.compile(r"^\s*(\w+) \(([\w.]+)\)")  # "test_x (app.module.Class.test_x)"
DOTS = re.compile(r" \.\.\. (ok|FAIL|ERROR|skipped|expected failure|unexpected success)\b")
ALONE = re.compile(r"^(ok|FAIL|ERROR|skipped '.*'|expected failure|unexpected success)$")
RAISED = re.compile(r"^[A-Za-z_][\w.]*(: |$)")  # "django.db.utils.OperationalError: ..."
HEADER = re.compile(r"^(FAIL|ERROR): (\w+) \(([\w.]+)\)")
SETTINGS = '''\
"""Written by testbed/django_suite.py: Django's own test settings, on {label}."""
{driver}from test_sqlite import *  # noqa: F403  (this Django version's own defaults)

_db = {db!r}
DATABASES = {{
    "default": {{**_db, "NAME": "django"}},
    "other": {{**_db, "NAME": "django_other"}},
}}
'''


@dataclass(frozen=True)
class Config:
    django: str
    vendor: str
    driver: str
    engine: str
    age: int | None

    @property
    def name(self) -> str:
        return f"{self.vendor}_{self.driver}_{self.engine}_age{self.age}"

    @property
    def label(self) -> str:
        return f"Django {self.django} {self.driver} {self.engine} CONN_MAX_AGE={self.age}"


def run(cmd: list[Any], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], check=True, text=True, **kwargs)


def find_python(minor: str) -> str:
    """``python<minor>``, through pyenv if its shim answers only when selected (see noxfile.py)."""
    env = dict(os.environ)
    pyenv = shutil.which("pyenv")
    if pyenv and not _answers(f"python{minor}", env):
        listing = run([pyenv, "versions", "--bare", "--skip-aliases"], capture_output=True)
        pattern = re.escape(minor) + r"\.\d+"
        patches = [v for v in listing.stdout.split() if re.fullmatch(pattern, v)]
        if patches:
            best = max(patches, key=lambda v: int(v.rsplit(".", 1)[1]))
            env["PYENV_VERSION"] = f"{best}:system"
    if not _answers(f"python{minor}", env):
        sys.exit(f"django-suite: python{minor} not found (PATH or pyenv); pass --python")
    code = "import sys; print(sys.executable)"
    return run([f"python{minor}", "-c", code], env=env, capture_output=True).stdout.strip()


def _answers(command: str, env: dict[str, str]) -> bool:
    try:
        return subprocess.run([command, "-c", ""], env=env, capture_output=True).returncode == 0
    except OSError:
        return False


def prepare(version: str, cache: Path | None, python: str | None) -> tuple[Path, Path]:
    """The virtualenv's python and the sdist's tests/ directory for one Django version."""
    venv = ROOT / f".venv-djsuite-{version}"
    vpython = venv / "bin" / "python"
    if not vpython.exists():
        base = python or find_python(PYTHON.get(version.rsplit(".", 1)[0], "3.12"))
        run([base, "-m", "venv", venv])
    cache = cache or venv / "sdist"
    cache.mkdir(parents=True, exist_ok=True)
    source = cache / f"django-{version}"
    if not (source / "tests" / "runtests.py").exists():
        tarballs = sorted(cache.glob(f"[Dd]jango-{version}.tar.gz"))
        if not tarballs:
            pip = [vpython, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
            run([*pip, f"django=={version}", "-d", cache])
            tarballs = sorted(cache.glob(f"[Dd]jango-{version}.tar.gz"))
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(cache, filter="data")
        (cache / tarballs[0].name.removesuffix(".tar.gz")).rename(source)
    wanted = json.dumps([version, str(ROOT), EXTRAS, RUNTESTS_NEEDS])
    marker = venv / "djsuite-installed"
    if not marker.exists() or marker.read_text() != wanted:
        print(f"django-suite: installing Django {version}, the drivers and connguard in {venv}")
        run([vpython, "-m", "pip", "install", "-q", source])
        run([vpython, "-m", "pip", "install", "-q", "-e", f"{ROOT}[{EXTRAS}]", *RUNTESTS_NEEDS])
        marker.write_text(wanted)
    return vpython, source / "tests"


def _start(vendor: str, servers: dict[str, Any]) -> Any:
    """Start one server into ``servers``: twice at most, as a bootstrap can fail under load."""
    for attempt in (1, 2):
        try:
            servers[vendor] = MariaDBServer() if vendor == "mysql" else PostgreSQLServer()
            servers[vendor].start()
            break
        except ServerError:
            if vendor in servers:
                servers.pop(vendor).stop()
            if attempt == 2:
                raise
    return servers[vendor]


def start_servers(vendors: list[str], servers: dict[str, Any]) -> None:
    """Start into ``servers`` as they come up, so that a failed start still stops the others."""
    if "mysql" in vendors:
        mariadb = _start("mysql", servers)
        # The testbed user already holds ALL ON *.*; spelled out for the test databases.
        user = f"'{mariadb.user}'@'%'"
        for db in ("django", "django_other", "test_django", "test_django_other"):
            mariadb.sql(f"CREATE DATABASE IF NOT EXISTS {db}; GRANT ALL ON `{db}`.* TO {user};")
    if "postgresql" in vendors:
        pg = _start("postgresql", servers)  # as the superuser: CREATE DATABASE, extensions
        for db in ("django", "django_other"):
            pg.sql(f"CREATE DATABASE {db}", "postgres")


def run_config(cfg: Config, python: Path, tests: Path, server: Any, args: Any) -> dict[str, Any]:
    out = python.parent.parent / "results"
    out.mkdir(exist_ok=True)
    db = server.settings(ENGINES[cfg.engine].format(cfg.vendor), CONN_MAX_AGE=cfg.age)
    driver = {
        "pymysql": "import pymysql\n\npymysql.install_as_MySQLdb()\n",
        "psycopg2": 'import sys\n\nsys.modules["psycopg"] = None  # so Django uses psycopg2\n',
    }.get(cfg.driver, "")
    module = f"djsuite_{cfg.name}"
    (out / f"{module}.py").write_text(SETTINGS.format(label=cfg.label, driver=driver, db=db))
    log = out / f"{cfg.name}.log"
    cmd = [str(python), "runtests.py", f"--settings={module}", *RUNTESTS_FLAGS, *args.apps]
    # A PYTHONPATH of the caller's comes after the settings: another connguard tree, say.
    path = os.pathsep.join(filter(None, [str(out), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    with open(log, "w") as stream:
        try:
            rc = subprocess.run(
                cmd, cwd=tests, env=env, stdout=stream, stderr=stream, timeout=args.timeout
            ).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    text = log.read_text(errors="replace")
    outcomes, reasons = parse(text)
    result = {"config": vars(cfg) | {"name": cfg.name}, "rc": rc, "log": str(log)}
    result |= {"seconds": round(time.monotonic() - started), "finished": "\nRan " in text}
    result |= {"outcomes": outcomes, "reasons": reasons}
    (out / f"{cfg.name}.json").write_text(json.dumps(result, indent=1, sort_keys=True))
    return result


def _key(method: str, test_id: str) -> str:
    return test_id if test_id.endswith("." + method) else f"{test_id} {method}"


def parse(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """Each test's outcome, and the last traceback line of each failure, from -v 2 output."""
    outcomes: dict[str, str] = {}
    pending: str | None = None  # the test whose status is still to come
    for line in text.splitlines():
        start = TEST.match(line)
        if start:
            pending = _key(start.group(1), start.group(2))
        rest = line[start.end() :] if start else line
        # The status follows " ... ", on the line of the docstring if there is one,
        # or alone on a line if the test printed something in between.
        found = DOTS.search(rest) or (None if start else ALONE.match(rest))
        if pending is None or found is None:
            continue
        word = found.group(1)
        new = "skip" if word.startswith("skipped") else STATUSES.get(word, word)
        if RANK.get(new, 0) >= RANK.get(outcomes.get(pending, ""), 0):
            outcomes[pending] = new  # a failed subtest outranks the test's later ok
        pending = None
    reasons: dict[str, str] = {}
    for block in text.split("=" * 70 + "\n")[1:]:
        head, _, body = block.partition("\n" + "-" * 70 + "\n")
        found = HEADER.match(head)
        lines = body.split("\n" + "-" * 70)[0].splitlines()
        raised = [line for line in lines if RAISED.match(line)] or lines  # the exception's line
        if found and raised:
            reasons.setdefault(_key(found.group(2), found.group(3)), raised[-1].strip()[:200])
    return outcomes, reasons


def counts(result: dict[str, Any]) -> dict[str, int]:
    tally = dict.fromkeys(COLUMNS, 0)
    for outcome in result["outcomes"].values():
        tally[outcome] += 1
    return tally


def report(results: list[dict[str, Any]]) -> int:
    """Print the counts and the differences; 1 if a test passes only on stock, 2 if a run broke."""
    print(
        f"\n{'Django':8} {'driver':12} {'CONN_MAX_AGE':12} {'engine':8}"
        + "".join(f"{c:>7}" for c in COLUMNS)
        + f"{'total':>7}{'time':>7}"
    )
    unfinished = regressions = 0
    for r in results:
        c, tally = r["config"], counts(r)
        unfinished += not r["finished"]
        note = "" if r["finished"] else f"  DID NOT FINISH (rc {r['rc']}), see {r['log']}"
        print(
            f"{c['django']:8} {c['driver']:12} {c['age']!s:12} {c['engine']:8}"
            + "".join(f"{tally[k]:7}" for k in COLUMNS)
            + f"{sum(tally.values()):7}{r['seconds']:6}s{note}"
        )
    by_key = {
        tuple(r["config"][k] for k in ("django", "driver", "age", "engine")): r for r in results
    }
    for (django, driver, age, engine), stock in by_key.items():
        guarded = by_key.get((django, driver, age, "guarded"))
        if engine != "stock" or guarded is None:
            continue
        names = sorted(set(stock["outcomes"]) | set(guarded["outcomes"]))
        differ = [n for n in names if stock["outcomes"].get(n) != guarded["outcomes"].get(n)]
        print(f"\nDjango {django} {driver} CONN_MAX_AGE={age}: {len(differ)} tests differ")
        for name in differ:
            was, now = stock["outcomes"].get(name, "-"), guarded["outcomes"].get(name, "-")
            why = guarded["reasons"].get(name) or stock["reasons"].get(name)
            worse = was == "ok" and now != "ok"
            regressions += worse
            print(f"  {'REGRESSION ' * worse}{name}: stock {was}, guarded {now}")
            if why:
                print(f"      {why}")
    return 2 if unfinished else 1 if regressions else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--django", action="append", help="a version; repeatable (5.2.19, 6.1.3)")
    p.add_argument("--vendor", action="append", choices=["mysql", "postgresql"])
    p.add_argument("--conn-max-age", action="append", choices=["0", "None"])
    p.add_argument("--engine", action="append", choices=list(ENGINES))
    p.add_argument("--apps", nargs="+", default=list(APPS), help="runtests.py labels")
    p.add_argument("--mysql-driver", choices=["mysqlclient", "pymysql"], default="mysqlclient")
    p.add_argument("--pg-driver", choices=["psycopg", "psycopg2"], default="psycopg")
    p.add_argument("--sdist-cache", type=Path, help="where sdists are (or go), e.g. a shared dir")
    p.add_argument("--python", help="the interpreter for the virtualenvs (default: found)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per configuration")
    p.add_argument("--stored", action="store_true", help="report the last runs, run nothing")
    args = p.parse_args(argv)
    drivers = {"mysql": args.mysql_driver, "postgresql": args.pg_driver}
    configs = [
        Config(d, v, drivers[v], e, None if a == "None" else int(a))
        for d in args.django or ["5.2.19", "6.1.3"]
        for v in args.vendor or ["mysql", "postgresql"]
        for a in args.conn_max_age or ["0", "None"]
        for e in args.engine or list(ENGINES)
    ]
    if args.stored:
        stored = [
            ROOT / f".venv-djsuite-{c.django}" / "results" / f"{c.name}.json" for c in configs
        ]
        return report([json.loads(path.read_text()) for path in stored if path.exists()])

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # so that the servers are stopped below

    signal.signal(signal.SIGTERM, stop)
    versions = dict.fromkeys(c.django for c in configs)
    envs = {v: prepare(v, args.sdist_cache, args.python) for v in versions}
    servers: dict[str, Any] = {}
    results = []
    try:
        start_servers(sorted({c.vendor for c in configs}), servers)
        for i, cfg in enumerate(configs, 1):
            print(f"[{i}/{len(configs)}] {cfg.label} ...", end=" ", flush=True)
            results.append(run_config(cfg, *envs[cfg.django], servers[cfg.vendor], args))
            tally = counts(results[-1])
            print(f"{results[-1]['seconds']} s, " + ", ".join(f"{k} {n}" for k, n in tally.items()))
    finally:
        for server in servers.values():
            server.stop()
    return report(results)


if __name__ == "__main__":
    sys.exit(main())
