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
from connguard import signals
from tests.helpers import kill, make_wrapper, receiving, select_one, server_id

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
    # Generous, so that the fresh connection's first use is "not yet" however slow
    # the machine is; the idle time past it is set on the guard's clock.
    wrapper = pooled(validate_after=30)
    with receiving(signals.connection_validated, wrapper.alias) as validated:
        select_one(wrapper)
        assert validated == []
        wrapper._connguard.last_used -= 31  # held, idle past validate_after
        select_one(wrapper)
    assert connguard.stats(wrapper.alias)["validations"] == 1
    assert [(v["reason"], v["ok"]) for v in validated] == [("idle", True)]
    assert validated[0]["idle"] >= 31


def test_idle_time_in_the_pool_counts(pooled: Any) -> None:
    """A connection that sat in the pool is validated at its first use after checkout."""
    validate_after, in_pool = 0.2, 0.25
    wrapper = pooled(max_size=1, validate_after=validate_after)
    with receiving(signals.connection_validated, wrapper.alias) as validated:
        select_one(wrapper)
        # Validated only if it had sat idle past validate_after since the pool
        # opened it: on a machine that stalls, it may have.
        at_first_checkout = len(validated)
        first = wrapper.connection
        wrapper.close()  # returned to the pool
        time.sleep(in_pool)  # at least this long: a stall only makes it longer
        select_one(wrapper)  # checked out again
    assert wrapper.connection is first
    assert all(v["idle"] >= validate_after for v in validated)
    # The time in the pool counted: the use after it validated, once.
    assert [(v["reason"], v["ok"]) for v in validated[at_first_checkout:]] == [("idle", True)]
    assert validated[-1]["idle"] >= in_pool
    assert connguard.stats(wrapper.alias)["validations"] == at_first_checkout + 1


def test_server_idle_limit_is_read_once_per_pooled_connection(pooled: Any) -> None:
    wrapper = pooled()
    wrapper.settings_dict["OPTIONS"]["options"] = "-c idle_session_timeout=60000"
    select_one(wrapper)
    assert wrapper._connguard.server_timeout == 60.0
    first = wrapper.connection
    wrapper.close()
    select_one(wrapper)
    if wrapper.connection is first:  # the same pooled connection: remembered
        assert wrapper._connguard.server_timeout == 60.0


@pytest.mark.parametrize("guarded", [True, False], ids=["connguard", "stock"])
def test_connection_that_died_in_the_pool(pooled: Any, servers: Any, guarded: bool) -> None:
    from tests.helpers import fileno, wait_closed_by_server

    wrapper = pooled(guarded=guarded, max_size=1)
    select_one(wrapper)
    ident, fd = server_id(wrapper), fileno(wrapper)
    wrapper.close()  # back to the pool, still connected
    servers["postgresql"].kill(ident)
    wait_closed_by_server(fd)
    if guarded:
        assert select_one(wrapper) == 1
        assert server_id(wrapper) != ident
    else:
        with pytest.raises(Error):
            select_one(wrapper)
