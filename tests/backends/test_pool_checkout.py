"""Django's PostgreSQL pool: no dead pooled connection ever reaches a statement.

Every connection of the pool is killed (or idled out by the server), then a job
runs five times: a query, then ``close()``, which hands the connection back.
Each checkout is validated before Django's ``connect()`` uses it, so no
statement meets a dead connection: none fails, and none even needs a retry.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import django
import pytest
from django.conf import settings
from django.db import Error
from django.db.backends.signals import connection_created

import connguard
from connguard import signals
from connguard.exceptions import ConnectionLost
from tests.helpers import make_wrapper, select_one, server_id, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True, databases="__all__"),
    pytest.mark.skipif(settings.PG_DRIVER != "psycopg", reason="Django's pool needs psycopg 3"),
]

_names = itertools.count()


@pytest.fixture
def pool_of(servers: Any) -> Iterator[Callable[..., Any]]:
    """``pool_of(size)``: a warm pool of ``size`` connections, all open on the server."""
    made: list[Any] = []

    def make(size: int, *, guarded: bool = True, **options: Any) -> Any:
        name = f"checkout{next(_names)}"  # pools are cached per alias
        wrapper = make_wrapper(
            "postgresql",
            guarded=guarded,
            alias=name,
            CONN_MAX_AGE=0,
            OPTIONS={
                "pool": {"min_size": size, "max_size": size, **options.pop("pool", {})},
                "application_name": name,
                **options,
            },
        )
        made.append(wrapper)
        wrapper.pool.open(wait=True, timeout=30)  # every connection opened
        assert len(backends(servers, name)) == size
        return wrapper

    yield make
    for wrapper in made:
        wrapper.close()
        wrapper.close_pool()


def backends(servers: Any, application_name: str) -> list[int]:
    out = servers["postgresql"].sql(
        f"SELECT pid FROM pg_stat_activity WHERE application_name = '{application_name}'"
    )
    return [int(line) for line in out.split()]


def kill_all(servers: Any, wrapper: Any) -> int:
    """Terminate every backend of the wrapper's pool, and wait until each has exited."""
    pids = backends(servers, wrapper.alias)
    servers["postgresql"].kill(*pids)  # returns once the server lists none of them
    assert backends(servers, wrapper.alias) == []
    return len(pids)


def lend_each(wrapper: Any, size: int) -> None:
    """Check every pooled connection out once through a guarded wrapper, then return it."""
    holders = [wrapper] + [
        make_wrapper("postgresql", alias=wrapper.alias, **_same_settings(wrapper))
        for _ in range(size - 1)
    ]
    for holder in holders:
        select_one(holder)
    assert len({server_id(holder) for holder in holders}) == size
    for holder in holders:
        holder.close()


def _same_settings(wrapper: Any) -> dict[str, Any]:
    return {key: wrapper.settings_dict[key] for key in ("CONN_MAX_AGE", "OPTIONS")}


@pytest.fixture
def retried() -> Iterator[list[str]]:
    """The reasons of every statement retry: a dead connection met a statement."""
    seen: list[str] = []

    def receiver(reason: str, **kwargs: Any) -> None:
        seen.append(reason)

    signals.statement_retried.connect(receiver)
    yield seen
    signals.statement_retried.disconnect(receiver)


def five_jobs(wrapper: Any) -> None:
    for _ in range(5):
        assert select_one(wrapper) == 1
        wrapper.close()


@pytest.mark.parametrize("size", [4, 8, 16])
@pytest.mark.parametrize("lent", [False, True], ids=["fresh", "lent-before"])
def test_killed_pool(pool_of: Any, servers: Any, retried: list[str], size: int, lent: bool) -> None:
    wrapper = pool_of(size)
    if lent:
        lend_each(wrapper, size)
    assert kill_all(servers, wrapper) == size
    five_jobs(wrapper)
    assert retried == []
    assert connguard.stats(wrapper.alias)["replaced"] >= 1


@pytest.mark.parametrize("size", [4, 8, 16])
def test_pool_idled_out_by_the_server(
    pool_of: Any, servers: Any, retried: list[str], size: int
) -> None:
    wrapper = pool_of(size, options="-c idle_session_timeout=1000")
    lend_each(wrapper, size)  # the guard learns the 1 s limit of each connection
    wait_until(lambda: backends(servers, wrapper.alias) == [], timeout=30)
    five_jobs(wrapper)
    assert retried == []
    replaced = connguard.stats(wrapper.alias)
    # Known idle past the server's limit: discarded without even a poll.
    assert replaced["replaced_server_timeout"] >= 1


def test_stock_pool_lends_killed_connections(pool_of: Any, servers: Any) -> None:
    wrapper = pool_of(4, guarded=False)
    kill_all(servers, wrapper)
    failed = 0
    for _ in range(5):
        try:
            select_one(wrapper)
        except Error:
            failed += 1
        wrapper.close()
    assert failed >= 1


def test_connection_created_receiver_that_runs_sql(
    pool_of: Any, servers: Any, retried: list[str]
) -> None:
    """Django runs connection_created on every checkout, before any statement."""
    wrapper = pool_of(4)
    seen: list[str] = []

    def set_search_path(sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection is wrapper:
            with connection.cursor() as cursor:
                cursor.execute("SET search_path TO public")
                seen.append("ok")

    connection_created.connect(set_search_path)
    try:
        kill_all(servers, wrapper)
        five_jobs(wrapper)
    finally:
        connection_created.disconnect(set_search_path)
    assert seen == ["ok"] * 5
    assert retried == []


def test_lost_in_a_connection_created_receiver_is_classified(pool_of: Any, servers: Any) -> None:
    """A loss inside connect() is ConnectionLost like any other, not a raw driver error."""
    wrapper = pool_of(1)

    def kill_myself(sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection is wrapper:
            servers["postgresql"].kill(server_id(connection))
            with connection.cursor() as cursor:
                cursor.execute("SET search_path TO public")

    connection_created.connect(kill_myself)
    try:
        with pytest.raises(ConnectionLost, match="session setup"):
            select_one(wrapper)
    finally:
        connection_created.disconnect(kill_myself)
    wrapper.close()
    assert select_one(wrapper) == 1  # the next use recovers


@pytest.mark.skipif(django.VERSION < (6, 1), reason="OPTIONS['pool']['check'] is Django 6.1+")
def test_a_users_pool_check_still_runs(pool_of: Any, servers: Any, retried: list[str]) -> None:
    checked: list[Any] = []

    def check(conn: Any) -> None:
        checked.append(conn)
        conn.execute("")

    wrapper = pool_of(4, pool={"check": check})
    lend_each(wrapper, 4)
    checked.clear()
    kill_all(servers, wrapper)
    five_jobs(wrapper)
    # The pool ran the user's check on every checkout, and discarded the dead
    # connections it found; the guard validated what the check let through.
    assert len(checked) >= 5
    assert retried == []
