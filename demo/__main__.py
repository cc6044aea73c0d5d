"""The connguard demo: one worker loop, Django's stock MySQL backend vs connguard's.

Starts a throwaway MariaDB on 127.0.0.1, then runs the same job loop twice with
Django's default settings (CONN_MAX_AGE=0, no health checks), like an rq
worker, a Kafka consumer or a management command: no HTTP request ever fires
Django's request signals. Between jobs the server closes the connection in the
three ways users hit in production: an idle timeout, a KILL, a restart.

    python -m demo
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import django
from django.conf import settings

from testbed.project import settings as base
from testbed.servers import MariaDBServer

# What happens before each job, and what it stands for in production.
SCRIPT: list[tuple[str, str]] = [
    ("", ""),
    ("", ""),
    ("idle", "idle past wait_timeout (SET SESSION wait_timeout=1, then wait)"),
    ("", ""),
    ("", ""),
    ("kill", "server-side KILL CONNECTION (a DBA, a failover, a proxy)"),
    ("", ""),
    ("", ""),
    ("restart", "server restart"),
    ("", ""),
    ("", ""),
    ("idle", "idle past wait_timeout again"),
    ("", ""),
]


@dataclass
class Result:
    label: str
    failed: list[int] = field(default_factory=list)
    ok: list[int] = field(default_factory=list)
    broken_at_end: bool = False


def wait_for_server_close(connection: Any, timeout: float = 10.0) -> None:
    import select

    poller = select.poll()
    poller.register(connection.connection.fileno(), select.POLLRDHUP | select.POLLHUP)
    poller.poll(timeout * 1000)


def inject(fault: str, alias: str, server: MariaDBServer) -> None:
    from django.db import connections

    connection = connections[alias]
    if fault == "restart":
        server.restart()
        return
    if connection.connection is None:
        return
    already_dead = "     (the worker's connection is already dead: nothing more to break)"
    if fault == "idle":
        try:
            with connection.connection.cursor() as cursor:  # the worker's own session
                cursor.execute("SET SESSION wait_timeout = 1")
        except connection.Database.Error:
            print(already_dead)
            return
    elif not server.kill(connection.connection.thread_id(), missing_ok=True):
        print(already_dead)
        return
    wait_for_server_close(connection)


def run_worker(alias: str, label: str, server: MariaDBServer) -> Result:
    from django.db import Error

    from demo.models import Event

    result = Result(label)
    print(f"\n=== worker on {label} (ENGINE {settings.DATABASES[alias]['ENGINE']}) ===")
    for job, (fault, story) in enumerate(SCRIPT, start=1):
        if fault:
            print(f"  -- {story}")
            inject(fault, alias, server)
        started = time.perf_counter()
        try:
            Event.objects.using(alias).create(job=job, worker=label)
            done = Event.objects.using(alias).filter(worker=label).count()
        except Error as exc:
            result.failed.append(job)
            message = str(exc).splitlines()[0][:90]
            print(f"  job {job:2d}: FAILED  {type(exc).__name__}: {message}")
        else:
            result.ok.append(job)
            took = (time.perf_counter() - started) * 1000
            print(f"  job {job:2d}: ok      {done} events stored ({took:.1f} ms)")
    # "Stayed broken": did the jobs after the last fault still fail?
    last_fault = max(i for i, (fault, _) in enumerate(SCRIPT, start=1) if fault)
    result.broken_at_end = all(job in result.failed for job in range(last_fault, len(SCRIPT) + 1))
    return result


def main() -> int:
    server = MariaDBServer()
    print("starting a throwaway MariaDB on 127.0.0.1 ...")
    server.start()
    try:
        print(f"MariaDB listening on 127.0.0.1:{server.port}, data in {server.dir}")
        settings.configure(
            USE_TZ=base.USE_TZ,
            TIME_ZONE=base.TIME_ZONE,
            DEFAULT_AUTO_FIELD=base.DEFAULT_AUTO_FIELD,
            INSTALLED_APPS=[*base.INSTALLED_APPS, "demo"],
            # Django's defaults: CONN_MAX_AGE=0, CONN_HEALTH_CHECKS=False.
            DATABASES={
                "default": server.settings("django.db.backends.mysql"),
                "connguard": server.settings("connguard.db.backends.mysql"),
            },
            # On stdout, between the jobs' lines.
            LOGGING=base.connguard_logging(
                "INFO", stream="ext://sys.stdout", fmt="     [log] %(name)s: %(message)s"
            ),
        )
        django.setup()
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", run_syncdb=True, verbosity=0)
        connections.close_all()
        stock = run_worker("default", "stock", server)
        guarded = run_worker("connguard", "connguard", server)
        connections.close_all()
    finally:
        server.stop()

    total = len(SCRIPT)
    print("\n=== summary ===")
    for result in (stock, guarded):
        state = "and stayed broken" if result.broken_at_end else "and kept working"
        print(f"  {result.label:<10} failed {len(result.failed):2d} of {total} jobs {state}")
    print(
        f"\nstock failed {len(stock.failed)} jobs"
        f"{' and stayed broken' if stock.broken_at_end else ''}; "
        f"connguard failed {len(guarded.failed) or 'none'}."
    )
    return 0 if not guarded.failed and stock.failed else 1


if __name__ == "__main__":
    sys.exit(main())
