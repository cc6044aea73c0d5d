"""What the guard costs per use of a healthy, busy connection.

Starts throwaway MariaDB and PostgreSQL servers, then times Django's per-use
hook (``close_if_health_check_failed()``, called before every cursor) on the
stock backend and on connguard's, and a full ``SELECT 1`` round trip for scale.
With psycopg 3 it also times a checkout from Django's PostgreSQL pool and its
return (``ensure_connection()`` then ``close()``, as every job does with
``CONN_MAX_AGE = 0``), stock against guarded.

    python -m benchmarks.guard_overhead [--uses 200000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import django
from django.conf import settings

from testbed.servers import MariaDBServer, PostgreSQLServer


def per_use_ns(wrapper: Any, uses: int, rounds: int = 7) -> float:
    hook = wrapper.close_if_health_check_failed
    results = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(uses):
            hook()
        results.append((time.perf_counter_ns() - start) / uses)
    return statistics.median(results)


def query_us(wrapper: Any, count: int = 2000) -> float:
    start = time.perf_counter()
    for _ in range(count):
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    return (time.perf_counter() - start) / count * 1e6


def checkout_us(wrapper: Any, count: int = 5000) -> float:
    wrapper.ensure_connection()  # the first checkout of each pooled connection
    wrapper.close()
    start = time.perf_counter()
    for _ in range(count):
        wrapper.ensure_connection()
        wrapper.close()
    return (time.perf_counter() - start) / count * 1e6


def pooled(server: PostgreSQLServer, engine: str | None) -> dict[str, Any]:
    return server.settings(engine, CONN_MAX_AGE=0, OPTIONS={"pool": {"min_size": 1, "max_size": 1}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uses", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    mariadb, postgresql = MariaDBServer(), PostgreSQLServer()
    try:
        mariadb.start()
        postgresql.start()
        settings.configure(
            USE_TZ=True,
            DATABASES={
                "default": mariadb.settings(CONN_MAX_AGE=None),
                "mysql_stock": mariadb.settings("django.db.backends.mysql", CONN_MAX_AGE=None),
                "postgresql": postgresql.settings(CONN_MAX_AGE=None),
                "postgresql_stock": postgresql.settings(
                    "django.db.backends.postgresql", CONN_MAX_AGE=None
                ),
                "pool": pooled(postgresql, None),
                "pool_stock": pooled(postgresql, "django.db.backends.postgresql"),
            },
        )
        django.setup()
        from django.db import connections

        labels = {
            "mysql_stock": "MariaDB, stock",
            "default": "MariaDB, connguard",
            "postgresql_stock": "PostgreSQL, stock",
            "postgresql": "PostgreSQL, connguard",
        }
        hook = {alias: 0.0 for alias in labels}
        query: dict[str, list[float]] = {alias: [] for alias in labels}
        for alias in labels:
            connections[alias].ensure_connection()
            hook[alias] = per_use_ns(connections[alias], args.uses)
        # Interleaved rounds, so that drift on the machine hits every alias alike.
        for _ in range(args.rounds):
            for alias in labels:
                query[alias].append(query_us(connections[alias]))
        print(f"{'backend':<24} {'per-use hook (ns)':>18} {'SELECT 1 median (us)':>21}")
        for alias, label in labels.items():
            print(f"{label:<24} {hook[alias]:>18.0f} {statistics.median(query[alias]):>21.1f}")
        if connections["pool"].Database.__name__ == "psycopg":
            pools = {"pool_stock": "pool, stock", "pool": "pool, connguard"}
            checkout: dict[str, list[float]] = {alias: [] for alias in pools}
            for _ in range(args.rounds):
                for alias in pools:
                    checkout[alias].append(checkout_us(connections[alias]))
            print(f"\n{'PostgreSQL pool':<24} {'checkout + return, median (us)':>32}")
            for alias, label in pools.items():
                print(f"{label:<24} {statistics.median(checkout[alias]):>32.1f}")
            for alias in pools:
                connections[alias].close_pool()
        connections.close_all()
    finally:
        mariadb.stop()
        postgresql.stop()


if __name__ == "__main__":
    main()
