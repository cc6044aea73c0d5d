"""The failures from the user reports, on Django's stock backends and on connguard's.

Each scenario runs on both vendors. The stock tests prove that the failure is
really reproduced; the guarded tests prove that connguard survives it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import Error, connections, transaction
from django.db.backends.postgresql.psycopg_any import IsolationLevel
from django.db.backends.signals import connection_created

import connguard
from connguard.exceptions import ConnectionLost, OutcomeUnknown, TransactionLost
from tests.helpers import (
    ALIAS,
    STOCK_ALIAS,
    expire,
    kill,
    kill_while_running,
    make_wrapper,
    select_one,
    server_id,
)
from tests.testapp.models import Job

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def fail_twice(wrapper: Any) -> None:
    """The stock behaviour: the first use fails, and so does the next one."""
    with pytest.raises(Error):
        select_one(wrapper)
    with pytest.raises(Error):
        select_one(wrapper)


# ##### Idle past the server timeout #####


def test_stock_idle_timeout_fails_and_stays_broken(vendor: str) -> None:
    stock = make_wrapper(vendor, guarded=False)
    select_one(stock)
    expire(vendor, stock)
    fail_twice(stock)


def test_guarded_idle_timeout_is_invisible(vendor: str) -> None:
    guarded = make_wrapper(vendor, alias="idle")
    select_one(guarded)
    before = server_id(guarded)
    expire(vendor, guarded)
    assert select_one(guarded) == 1
    assert server_id(guarded) != before
    assert connguard.stats("idle")["replaced_socket_closed"] == 1, connguard.stats("idle")


# ##### Server-side kill between jobs #####


def test_stock_kill_between_jobs_fails_and_stays_broken(vendor: str, servers: Any) -> None:
    stock = make_wrapper(vendor, guarded=False)
    select_one(stock)
    kill(servers, vendor, stock)
    fail_twice(stock)


def test_guarded_kill_between_jobs_is_invisible(vendor: str, servers: Any) -> None:
    guarded = make_wrapper(vendor, alias="kill")
    select_one(guarded)
    before = server_id(guarded)
    kill(servers, vendor, guarded)
    assert select_one(guarded) == 1
    assert server_id(guarded) != before
    stats = connguard.stats("kill")
    assert stats["replaced_socket_closed"] == 1
    assert "validations" not in stats  # found dead without a round trip


def test_orm_after_kill_through_settings_alias(vendor: str, servers: Any) -> None:
    """One settings change is enough: plain ORM code on the alias survives."""
    alias = ALIAS[vendor]
    Job.objects.using(alias).create(key="a")
    kill(servers, vendor, connections[alias])
    assert Job.objects.using(alias).count() == 1
    kill(servers, vendor, connections[alias])
    Job.objects.using(alias).filter(key="a").update(runs=5)
    assert Job.objects.using(alias).get(key="a").runs == 5


def test_stock_orm_after_kill_stays_broken(vendor: str, servers: Any) -> None:
    alias, stock = ALIAS[vendor], STOCK_ALIAS[vendor]
    Job.objects.using(alias).create(key="a")
    assert Job.objects.using(stock).count() == 1
    kill(servers, vendor, connections[stock])
    for _ in range(2):
        with pytest.raises(Error):
            Job.objects.using(stock).count()


# ##### Server restart between jobs #####


def test_restart_between_jobs(vendor: str, servers: Any) -> None:
    stock = make_wrapper(vendor, guarded=False)
    guarded = make_wrapper(vendor, alias="restart")
    select_one(stock)
    select_one(guarded)
    servers[vendor].restart()
    fail_twice(stock)
    assert select_one(guarded) == 1
    assert connguard.stats("restart")["replaced"] == 1


# ##### A disconnect under a statement #####


# Not read-only (DO), so a lost one is never retried: the error must surface.
SLEEP = {"mysql": "DO SLEEP(5)", "postgresql": "DO $$ BEGIN PERFORM pg_sleep(5); END $$"}


def test_stock_kill_during_statement_stays_broken(vendor: str, servers: Any) -> None:
    stock = make_wrapper(vendor, guarded=False)
    select_one(stock)
    thread = kill_while_running(servers, vendor, stock, SLEEP[vendor])
    with pytest.raises(Error), stock.cursor() as cursor:
        cursor.execute(SLEEP[vendor])
    thread.join()
    fail_twice(stock)


def test_guarded_kill_during_statement_raises_clearly_then_recovers(
    vendor: str, servers: Any
) -> None:
    guarded = make_wrapper(vendor, alias="inflight")
    select_one(guarded)
    thread = kill_while_running(servers, vendor, guarded, SLEEP[vendor])
    with pytest.raises(ConnectionLost) as info, guarded.cursor() as cursor:
        cursor.execute(SLEEP[vendor])
    thread.join()
    assert isinstance(info.value, OutcomeUnknown)
    assert "'inflight'" in str(info.value)
    assert "outcome unknown" in str(info.value)
    assert "replaced at its next use" in str(info.value)
    assert select_one(guarded) == 1
    stats = connguard.stats("inflight")
    assert stats["disconnects"] >= 1
    assert stats["replaced_error"] == 1


# ##### atomic() #####


def test_atomic_on_connection_that_died_while_idle(vendor: str, servers: Any) -> None:
    alias = ALIAS[vendor]
    connections[alias].ensure_connection()
    kill(servers, vendor, connections[alias])
    with transaction.atomic(using=alias):
        Job.objects.using(alias).create(key="after-kill")
    assert Job.objects.using(alias).filter(key="after-kill").exists()


def test_stock_atomic_on_connection_that_died_while_idle(vendor: str, servers: Any) -> None:
    stock = STOCK_ALIAS[vendor]
    connections[stock].ensure_connection()
    kill(servers, vendor, connections[stock])
    with pytest.raises(Error), transaction.atomic(using=stock):
        Job.objects.using(stock).create(key="after-kill")


def test_kill_inside_atomic_fails_the_block_and_loses_nothing_committed(
    vendor: str, servers: Any
) -> None:
    alias = ALIAS[vendor]
    Job.objects.using(alias).create(key="committed")
    before = server_id(connections[alias])
    with pytest.raises(TransactionLost) as info, transaction.atomic(using=alias):
        Job.objects.using(alias).create(key="inside-1")
        kill(servers, vendor, connections[alias])
        Job.objects.using(alias).create(key="inside-2")
    assert f"{alias!r}" in str(info.value)
    assert "rolled the transaction back" in str(info.value)
    # The first use after the block gets a fresh connection, and only the
    # committed row is there.
    assert list(Job.objects.using(alias).values_list("key", flat=True)) == ["committed"]
    assert server_id(connections[alias]) != before


def test_kill_inside_manual_transaction(vendor: str, servers: Any) -> None:
    guarded = make_wrapper(vendor, alias="manual")
    select_one(guarded)
    guarded.set_autocommit(False)
    select_one(guarded)
    kill(servers, vendor, guarded)
    with pytest.raises(TransactionLost):
        select_one(guarded)
    # Still inside the transaction: the guard does not replace the connection
    # behind the user's back, so the next statement fails too, before anything
    # is sent.
    with pytest.raises(TransactionLost):
        select_one(guarded)
    assert connguard.stats("manual").get("replaced", 0) == 0
    # The server rolled back when the session ended, so a rollback is certain:
    # it succeeds, and closes the dead connection.
    guarded.rollback()
    assert guarded.connection is None
    guarded.set_autocommit(True)
    assert select_one(guarded) == 1


# ##### Session state after a reconnect #####


def test_session_state_is_replayed_after_reconnect(vendor: str, servers: Any) -> None:
    level = "serializable" if vendor == "mysql" else IsolationLevel.SERIALIZABLE
    guarded = make_wrapper(vendor, alias="state", OPTIONS={"isolation_level": level})
    created: list[str] = []

    def on_created(sender: Any, connection: Any, **kwargs: Any) -> None:
        created.append(connection.alias)

    connection_created.connect(on_created)
    try:
        for _ in range(2):
            select_one(guarded)
            kill(servers, vendor, guarded)
        guarded.set_autocommit(False)
        with guarded.cursor() as cursor:
            if vendor == "mysql":
                cursor.execute("SELECT @@session.tx_isolation")
                assert cursor.fetchone()[0] == "SERIALIZABLE"
            else:
                cursor.execute("SHOW transaction_isolation")
                assert cursor.fetchone()[0] == "serializable"
                cursor.execute("SHOW TimeZone")
                # The server default is America/New_York; Django sets UTC.
                assert cursor.fetchone()[0] == "UTC"
        guarded.rollback()
        guarded.set_autocommit(True)
    finally:
        connection_created.disconnect(on_created)
    assert created.count("state") == 3


# ##### CONN_MAX_AGE in a plain loop #####


@pytest.mark.parametrize("guarded", [True, False], ids=["connguard", "stock"])
def test_conn_max_age_in_plain_loop(vendor: str, guarded: bool) -> None:
    wrapper = make_wrapper(vendor, guarded=guarded, CONN_MAX_AGE=0.5)
    select_one(wrapper)
    first = server_id(wrapper)
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:
        select_one(wrapper)
    select_one(wrapper)
    if guarded:
        assert server_id(wrapper) != first
    else:
        # Stock Django applies CONN_MAX_AGE only at request boundaries.
        assert server_id(wrapper) == first


def test_conn_max_age_zero_never_reconnects_per_query(vendor: str) -> None:
    wrapper = make_wrapper(vendor, alias="age0", CONN_MAX_AGE=0)
    select_one(wrapper)
    first = server_id(wrapper)
    for _ in range(50):
        select_one(wrapper)
    assert server_id(wrapper) == first
    assert connguard.stats("age0")["connections_opened"] == 1


def test_conn_max_age_zero_still_closes_at_request_end(vendor: str) -> None:
    from django.db import close_old_connections

    alias = ALIAS[vendor]
    wrapper = connections[alias]
    old = wrapper.settings_dict["CONN_MAX_AGE"]
    wrapper.settings_dict["CONN_MAX_AGE"] = 0
    try:
        wrapper.close()
        select_one(wrapper)
        close_old_connections()
        assert wrapper.connection is None
    finally:
        wrapper.settings_dict["CONN_MAX_AGE"] = old


# ##### Worker threads #####


@pytest.mark.parametrize("guarded", [True, False], ids=["connguard", "stock"])
def test_worker_threads(vendor: str, servers: Any, guarded: bool) -> None:
    alias = (ALIAS if guarded else STOCK_ALIAS)[vendor]
    workers = 4
    ready = threading.Barrier(workers + 1)
    killed = threading.Barrier(workers + 1)
    wrappers: list[Any] = [None] * workers
    results: list[object] = [None] * workers

    def work(index: int) -> None:
        conn = connections[alias]  # this thread's own connection
        try:
            select_one(conn)
            wrappers[index] = conn
            ready.wait()
            killed.wait()
            results[index] = select_one(conn)
        except Exception as exc:
            results[index] = exc
        finally:
            conn.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    ready.wait()
    assert len({server_id(w) for w in wrappers}) == workers
    for wrapper in wrappers:
        kill(servers, vendor, wrapper)
    killed.wait()
    for thread in threads:
        thread.join()
    if guarded:
        assert results == [1] * workers
    else:
        assert all(isinstance(r, Error) for r in results)


def test_stock_kill_inside_atomic(vendor: str, servers: Any) -> None:
    """Stock Django fails the block too, but with the driver's bare error."""
    alias, stock = ALIAS[vendor], STOCK_ALIAS[vendor]
    Job.objects.using(alias).create(key="committed")
    with pytest.raises(Error) as info, transaction.atomic(using=stock):
        Job.objects.using(stock).create(key="inside-1")
        kill(servers, vendor, connections[stock])
        Job.objects.using(stock).create(key="inside-2")
    assert not isinstance(info.value, TransactionLost)
    assert stock not in str(info.value)
    assert list(Job.objects.using(alias).values_list("key", flat=True)) == ["committed"]
