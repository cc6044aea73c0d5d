"""Django's PostgreSQL pool (OPTIONS["pool"]): a connection a worker holds is never
checked by the pool again, so the guard checks it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import Error

import connguard
from tests.helpers import kill, make_wrapper, select_one, server_id

pytestmark = [
    pytest.mark.django_db(transaction=True, databases="__all__"),
    pytest.mark.skipif(settings.PG_DRIVER != "psycopg", reason="Django's pool needs psycopg 3"),
]

_count = 0


@pytest.fixture
def pooled() -> Iterator[Any]:
    made: list[Any] = []

    def make(guarded: bool = True, max_size: int = 2, **connguard_options: Any) -> Any:
        global _count
        _count += 1  # pools are cached per alias: one alias per wrapper
        wrapper = make_wrapper(
            "postgresql",
            guarded=guarded,
            alias=f"pool{_count}",
            CONN_MAX_AGE=0,
            OPTIONS={
                "pool": {"min_size": 1, "max_size": max_size},
                **({"connguard": connguard_options} if guarded else {}),
            },
        )
        made.append(wrapper)
        return wrapper

    yield make
    for wrapper in made:
        wrapper.close()
        wrapper.close_pool()


def test_stock_pool_hands_a_held_dead_connection_to_the_worker(pooled: Any, servers: Any) -> None:
    wrapper = pooled(guarded=False)
    select_one(wrapper)
    kill(servers, "postgresql", wrapper)
    for _ in range(2):
        with pytest.raises(Error):
            select_one(wrapper)


def test_held_dead_connection_goes_back_to_the_pool_as_broken(pooled: Any, servers: Any) -> None:
    wrapper = pooled()
    select_one(wrapper)
    dead = server_id(wrapper)
    kill(servers, "postgresql", wrapper)
    assert select_one(wrapper) == 1
    assert server_id(wrapper) != dead
    assert connguard.stats(wrapper.alias)["replaced_socket_closed"] == 1
    # The pool was told: it discarded the connection instead of lending it again.
    pool_stats = wrapper.pool.get_stats()
    assert pool_stats.get("returns_bad", 0) + pool_stats.get("connections_lost", 0) >= 1
    wrapper.close()  # back to the pool
    for _ in range(3):
        assert select_one(wrapper) == 1
        assert server_id(wrapper) != dead
        wrapper.close()


def test_held_connection_is_validated_after_idle(pooled: Any) -> None:
    wrapper = pooled(validate_after=0.2)
    select_one(wrapper)
    time.sleep(0.25)
    select_one(wrapper)
    assert connguard.stats(wrapper.alias)["validations"] == 1


def test_idle_time_in_the_pool_counts(pooled: Any) -> None:
    """A connection that sat in the pool is validated at its first use after checkout."""
    wrapper = pooled(max_size=1, validate_after=0.2)
    select_one(wrapper)
    first = wrapper.connection
    wrapper.close()  # returned to the pool
    time.sleep(0.25)
    select_one(wrapper)  # checked out again: idle 0.25 s in all
    assert wrapper.connection is first
    assert connguard.stats(wrapper.alias)["validations"] == 1


def test_server_idle_limit_is_read_once_per_pooled_connection(pooled: Any) -> None:
    wrapper = pooled()
    wrapper.settings_dict["OPTIONS"]["options"] = "-c idle_session_timeout=60000"
    select_one(wrapper)
    assert wrapper._connguard_server_timeout == 60.0
    first = wrapper.connection
    wrapper.close()
    select_one(wrapper)
    if wrapper.connection is first:  # the same pooled connection: remembered
        assert wrapper._connguard_server_timeout == 60.0


@pytest.mark.parametrize("guarded", [True, False], ids=["connguard", "stock"])
def test_connection_that_died_in_the_pool(pooled: Any, servers: Any, guarded: bool) -> None:
    from tests.helpers import fileno, wait_closed_by_server

    wrapper = pooled(guarded=guarded, max_size=1)
    select_one(wrapper)
    ident, fd = server_id(wrapper), fileno(wrapper)
    wrapper.close()  # back to the pool, still connected
    servers["postgresql"].sql(f"SELECT pg_terminate_backend({ident}, 5000)")
    wait_closed_by_server(fd)
    if guarded:
        assert select_one(wrapper) == 1
        assert server_id(wrapper) != ident
    else:
        with pytest.raises(Error):
            select_one(wrapper)
