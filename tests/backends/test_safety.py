"""Statement-level safety: what happens when the connection dies under a statement.

A proxy between client and server drops the reply to a chosen request: the
statement reached the server and ran, but the client cannot know. Rows are
counted afterwards to show what was applied, and how often.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import Error, transaction
from django.db.backends.signals import connection_created

import connguard
from connguard import signals
from connguard.exceptions import (
    CommitOutcomeUnknown,
    ConnectionLost,
    OutcomeUnknown,
    TransactionLost,
)
from testbed.proxy import Proxy
from tests.helpers import (
    ALIAS,
    STOCK_ALIAS,
    kill_while_running,
    make_wrapper,
    receiving,
    select_one,
    server_id,
)
from tests.testapp.models import Entry, Job

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def via(proxy: Proxy, vendor: str, *, guarded: bool = True, alias: str = "safe") -> Any:
    return make_wrapper(vendor, guarded=guarded, alias=alias, HOST=proxy.host, PORT=str(proxy.port))


def insert(wrapper: Any, note: str) -> None:
    with wrapper.cursor() as cursor:
        cursor.execute("INSERT INTO testapp_entry (note) VALUES (%s)", [note])


def entries(vendor: str, note: str) -> int:
    """Rows with this note, counted over a direct connection (not the proxy's)."""
    return Entry.objects.using(STOCK_ALIAS[vendor]).filter(note=note).count()


# ##### Autocommit writes whose reply is lost #####


def test_insert_lost_in_flight_is_never_applied_twice(vendor: str, proxy: Proxy) -> None:
    wrapper = via(proxy, vendor)
    select_one(wrapper)
    proxy.cut_next_reply()
    with pytest.raises(OutcomeUnknown) as info:
        insert(wrapper, "once")
    assert "outcome unknown: the connection was lost after the statement was sent" in str(
        info.value
    )
    assert "'safe'" in str(info.value)
    assert entries(vendor, "once") == 1  # it ran, once: not retried
    assert connguard.stats("safe")["retries_refused"] == 1
    insert(wrapper, "next")  # the connection is replaced at its next use
    assert entries(vendor, "next") == 1


def test_marking_a_write_idempotent_retries_it(vendor: str, proxy: Proxy) -> None:
    """The control for the test above: the same loss, with a retry allowed,
    applies the write twice. This is why writes are never retried unasked."""
    wrapper = via(proxy, vendor)
    select_one(wrapper)
    proxy.cut_next_reply()
    with connguard.idempotent():
        insert(wrapper, "twice")
    assert entries(vendor, "twice") == 2
    assert connguard.stats("safe")["retries"] == 1


def test_stock_insert_lost_in_flight(vendor: str, proxy: Proxy) -> None:
    wrapper = via(proxy, vendor, guarded=False)
    select_one(wrapper)
    proxy.cut_next_reply()
    with pytest.raises(Error) as info:
        insert(wrapper, "stock")
    assert not isinstance(info.value, OutcomeUnknown)
    assert entries(vendor, "stock") == 1
    with pytest.raises(Error):  # and the stock connection stays broken
        insert(wrapper, "stock-2")


def test_executemany_lost_in_flight_is_not_retried(vendor: str, proxy: Proxy) -> None:
    wrapper = via(proxy, vendor)
    select_one(wrapper)
    batch = ["many-0", "many-1", "many-2"]
    proxy.cut_next_reply()
    with pytest.raises(OutcomeUnknown, match="executemany"), wrapper.cursor() as cursor:
        cursor.executemany("INSERT INTO testapp_entry (note) VALUES (%s)", [(n,) for n in batch])
    assert connguard.stats("safe")["retries_refused"] == 1
    assert "retries" not in connguard.stats("safe")
    # Not retried: the rows are what the one attempt ran, each once (a retry
    # would apply some twice). How far it got is the driver's.
    ran = batch[:1] if one_insert_at_a_time(vendor) else batch
    assert {note: entries(vendor, note) for note in batch} == {
        note: int(note in ran) for note in batch
    }


def one_insert_at_a_time(vendor: str) -> bool:
    """Whether the driver's executemany() sends one INSERT per row.

    The MySQL drivers send the batch as one multi-row INSERT, and psycopg 3 (on
    a libpq with pipeline mode) pipelines it in one implicit transaction that
    commits before any reply is sent: either way, all of it ran before the reply
    was lost. psycopg2 sends one INSERT at a time: only the first one ran.
    """
    if vendor != "postgresql":
        return False
    if settings.PG_DRIVER == "psycopg2":
        return True
    import psycopg

    return not psycopg.Pipeline.is_supported()


# ##### Read-only statements #####


def test_select_lost_in_flight_is_retried_transparently(vendor: str, proxy: Proxy) -> None:
    Job.objects.using(ALIAS[vendor]).create(key="k1", runs=7)
    wrapper = via(proxy, vendor)
    select_one(wrapper)
    before = server_id(wrapper)
    proxy.cut_next_reply()
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT runs FROM testapp_job WHERE id > %s", [0])
        assert cursor.fetchall() in ([(7,)], ((7,),))
    assert server_id(wrapper) != before
    assert connguard.stats("safe")["retries"] == 1


def test_stock_select_lost_in_flight_fails(vendor: str, proxy: Proxy) -> None:
    wrapper = via(proxy, vendor, guarded=False)
    select_one(wrapper)
    proxy.cut_next_reply()
    with pytest.raises(Error):
        select_one(wrapper)


# Sleeps for as long as a "hold" row exists: the killer deletes it before the
# kill, so the statement runs until it is killed, and its retry returns at once.
HOLD = {
    "mysql": "SELECT SLEEP(30 * COUNT(*)) FROM testapp_entry WHERE note = 'hold'",
    "postgresql": "SELECT pg_sleep(30 * count(*)) FROM testapp_entry WHERE note = 'hold'",
}


def test_orm_read_after_kill_through_settings(vendor: str, servers: Any) -> None:
    """A SELECT whose connection dies between the guard's check and the
    statement: here the server kills the session while the query runs."""
    from django.db import connections

    alias = ALIAS[vendor]
    connection = connections[alias]
    connection.ensure_connection()
    Entry.objects.using(STOCK_ALIAS[vendor]).create(note="hold")

    def release() -> None:  # in the killer's thread, on its own connection
        try:
            Entry.objects.using(STOCK_ALIAS[vendor]).filter(note="hold").delete()
        finally:
            connections[STOCK_ALIAS[vendor]].close()

    thread = kill_while_running(servers, vendor, connection, HOLD[vendor], before_kill=release)
    try:
        with connection.cursor() as cursor:
            cursor.execute(HOLD[vendor])  # killed while it runs, retried: at once
            cursor.fetchall()
    finally:
        thread.join()
    assert connguard.stats(alias)["retries"] == 1


def test_server_side_cursor_declare_is_retried(vendor: str, proxy: Proxy) -> None:
    """QuerySet.iterator() on PostgreSQL runs on a named (server-side) cursor."""
    Job.objects.using(ALIAS[vendor]).bulk_create(Job(key=f"it{i}") for i in range(5))
    wrapper = via(proxy, vendor)
    select_one(wrapper)
    proxy.cut_next_reply()
    with wrapper.chunked_cursor() as cursor:
        cursor.execute("SELECT id FROM testapp_job ORDER BY id")
        assert len(cursor.fetchmany(10)) == 5
    assert connguard.stats("safe")["retries"] == 1


def test_server_side_cursor_lost_while_fetching_is_not_retried(vendor: str, proxy: Proxy) -> None:
    if vendor != "postgresql":
        pytest.skip("Django's MySQL backend has no server-side cursors")
    Job.objects.using(ALIAS[vendor]).bulk_create(Job(key=f"f{i}") for i in range(5))
    wrapper = via(proxy, vendor)
    select_one(wrapper)
    with wrapper.chunked_cursor() as cursor:
        cursor.execute("SELECT id FROM testapp_job ORDER BY id")
        assert len(cursor.fetchmany(2)) == 2
        proxy.cut_next_reply()
        with pytest.raises(connguard.exceptions.ConnectionLost) as info:
            cursor.fetchmany(2)
    assert "fetch" in str(info.value)
    assert "retries" not in connguard.stats("safe")
    assert select_one(wrapper) == 1


# ##### Transactions #####


@pytest.fixture
def aliased(vendor: str, proxy: Proxy) -> Iterator[Any]:
    """The vendor's alias in ``connections``, going through the proxy, so that
    ``transaction.atomic(using=alias)`` drives it."""
    from django.db import connections

    alias = ALIAS[vendor]
    original = connections[alias]
    wrapper = via(proxy, vendor, alias=alias)
    connections[alias] = wrapper
    yield wrapper
    connections[alias] = original


def test_lost_inside_atomic_loses_nothing_committed(
    vendor: str, proxy: Proxy, aliased: Any
) -> None:
    alias, wrapper = ALIAS[vendor], aliased
    insert(wrapper, "committed")
    with pytest.raises(TransactionLost), transaction.atomic(using=alias):
        insert(wrapper, "in-block")
        proxy.cut_next_reply()
        insert(wrapper, "in-block")
    assert entries(vendor, "committed") == 1
    assert entries(vendor, "in-block") == 0
    assert select_one(wrapper) == 1  # fresh connection after the block


def test_commit_reply_lost_is_commit_outcome_unknown(
    vendor: str, proxy: Proxy, aliased: Any
) -> None:
    alias, wrapper = ALIAS[vendor], aliased
    with pytest.raises(CommitOutcomeUnknown) as info, transaction.atomic(using=alias):
        insert(wrapper, "commit")
        proxy.cut_next_reply()  # the COMMIT's reply
    assert "commit outcome unknown" in str(info.value)
    # It was in fact committed, and it was not committed twice.
    assert entries(vendor, "commit") == 1
    assert connguard.stats(alias)["transactions_lost"] == 1
    assert "retries" not in connguard.stats(alias)
    assert select_one(wrapper) == 1


def test_rollback_on_a_lost_connection_succeeds(vendor: str, proxy: Proxy) -> None:
    wrapper = via(proxy, vendor)
    select_one(wrapper)
    wrapper.set_autocommit(False)
    insert(wrapper, "rolled-back")
    proxy.cut_next_reply()
    wrapper.rollback()  # the server rolls back when the session ends: certain
    wrapper.set_autocommit(True)
    assert entries(vendor, "rolled-back") == 0
    assert select_one(wrapper) == 1


def test_stock_rollback_on_a_lost_connection_raises(vendor: str, proxy: Proxy) -> None:
    wrapper = via(proxy, vendor, guarded=False)
    select_one(wrapper)
    wrapper.set_autocommit(False)
    insert(wrapper, "stock-rb")
    proxy.cut_next_reply()
    with pytest.raises(Error):
        wrapper.rollback()


# ##### The end and the start of a transaction (found by the soak) #####


def test_lost_reply_to_autocommit_on_after_commit(vendor: str, proxy: Proxy, aliased: Any) -> None:
    """MySQL drivers send SET autocommit=1 after COMMIT. Losing its reply loses
    nothing: the block succeeded, its on_commit hooks run, the alias works."""
    if vendor != "mysql":
        pytest.skip("psycopg turns autocommit on without a round trip")
    alias, wrapper = ALIAS[vendor], aliased
    ran: list[str] = []
    with transaction.atomic(using=alias):
        insert(wrapper, "kept")
        transaction.on_commit(lambda: ran.append("hook"), using=alias)
        proxy.cut_next_reply(after=1)  # COMMIT's reply passes, SET autocommit=1's is lost
    assert entries(vendor, "kept") == 1
    assert ran == ["hook"]
    assert wrapper.get_autocommit() is True
    insert(wrapper, "after")
    assert entries(vendor, "after") == 1


def test_commit_reply_lost_while_the_server_is_unreachable(
    vendor: str, proxy: Proxy, aliased: Any
) -> None:
    """The error is CommitOutcomeUnknown, not the failed reconnect after it."""
    alias, wrapper = ALIAS[vendor], aliased
    with pytest.raises(CommitOutcomeUnknown), transaction.atomic(using=alias):
        insert(wrapper, "unreachable")
        proxy.cut_next_reply(then_refuse=True)
    assert entries(vendor, "unreachable") == 1  # committed, and reported as maybe
    assert wrapper.connection is None  # no reconnect was attempted at the block's end
    with pytest.raises(Error):  # the server is still unreachable
        select_one(wrapper)


def test_lost_reply_to_autocommit_off_at_atomic_entry(
    vendor: str, proxy: Proxy, aliased: Any
) -> None:
    """Nothing has happened in the transaction yet: it starts on a fresh connection."""
    if vendor != "mysql":
        pytest.skip("psycopg turns autocommit off without a round trip")
    alias, wrapper = ALIAS[vendor], aliased
    select_one(wrapper)
    before = server_id(wrapper)
    proxy.cut_next_reply()  # SET autocommit=0
    with transaction.atomic(using=alias):
        insert(wrapper, "started")
    assert entries(vendor, "started") == 1
    assert server_id(wrapper) != before


# ##### The rules the checks before use leave to the error path #####

# Every check before use off: the dead connection reaches the statement.
BLIND = {"connguard": {"validate_after": None, "socket_check": False, "server_timeout": None}}


def test_a_write_that_never_ran_is_retried(vendor: str, servers: Any) -> None:
    if vendor == "mysql":
        pytest.skip(
            "MariaDB closes an idle session without an error packet, so the client cannot "
            "tell that a write never ran (MySQL 8.0.24+ sends 4031)"
        )
    Job.objects.using(ALIAS[vendor]).create(key="unsent", runs=0)
    options = {**BLIND, "options": "-c idle_session_timeout=1000"}
    wrapper = make_wrapper(vendor, alias="safe", OPTIONS=options)
    select_one(wrapper)
    servers[vendor].wait_gone(server_id(wrapper))  # the server ended the idle session
    update = "UPDATE testapp_job SET runs = runs + 1 WHERE key = %s"
    with receiving(signals.statement_retried, "safe") as retried:
        if wrapper._connguard_driver.name == "psycopg2":
            # libpq reports only "server closed the connection unexpectedly",
            # without the 57P05 that proves it: so the guard cannot know.
            with pytest.raises(OutcomeUnknown), wrapper.cursor() as cursor:
                cursor.execute(update, ["unsent"])
            runs, reasons = 0, []
        else:
            with wrapper.cursor() as cursor:
                cursor.execute(update, ["unsent"])
            runs, reasons = 1, ["never_executed"]
    assert [sent["reason"] for sent in retried] == reasons
    assert Job.objects.using(STOCK_ALIAS[vendor]).get(key="unsent").runs == runs


def test_a_retry_that_fails_too_is_connection_lost(vendor: str, proxy: Proxy) -> None:
    # Declared: no idle-limit query after connect, so the first reply after
    # connection_created is the retried statement's.
    wrapper = make_wrapper(
        vendor, alias="safe", HOST=proxy.host, PORT=str(proxy.port),
        OPTIONS={"connguard": {"server_timeout": 3600}},
    )  # fmt: skip
    select_one(wrapper)
    before = server_id(wrapper)

    def cut_the_retry(sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection is wrapper:
            proxy.cut_next_reply()

    proxy.cut_next_reply()
    connection_created.connect(cut_the_retry)
    try:
        with pytest.raises(ConnectionLost) as lost, wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection_created.disconnect(cut_the_retry)
    assert type(lost.value) is ConnectionLost
    assert "retried once on a fresh connection, and the retry failed too" in str(lost.value)
    assert connguard.stats("safe")["retries"] == 1
    assert select_one(wrapper) == 1  # the next use recovers
    assert server_id(wrapper) != before
