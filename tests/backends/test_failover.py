"""A node that turns read-only under open connections, on the test bed's own servers.

The server is made read-only the way a demotion leaves it for the sessions
that stay: MariaDB ``SET GLOBAL read_only = ON`` (for a user without SUPER),
PostgreSQL ``default_transaction_read_only`` through ``ALTER SYSTEM`` and a
reload. It is made writable again from a signal receiver, at the moment the
guard finds a new connection on the read-only node, as a promotion would end
the failover: no sleep decides when. tests/failover runs the same against a
real MariaDB replica promotion and a real Patroni cluster.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import DatabaseError

import connguard
from connguard import signals
from connguard.exceptions import FailoverTimeout, TransactionLost
from tests.helpers import ALIAS, STOCK_ALIAS, make_wrapper, receiving, select_one, server_id
from tests.testapp.models import Entry

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

APP_USER = {"USER": "connguard_app", "PASSWORD": "app-secret"}


@pytest.fixture(autouse=True)
def _new_alias_state() -> Iterator[None]:
    """Each test's "failover" alias starts with no failover under way: what the
    process's wrappers of an alias share would otherwise carry over."""
    from connguard.db.backends.base import state

    state._aliases.pop("failover", None)
    yield
    state._aliases.pop("failover", None)


@pytest.fixture
def node(vendor: str, servers: Any) -> Iterator[Callable[[bool], None]]:
    """``node(True)`` makes the server read-only for the guard's sessions, ``node(False)``
    writable again; writable once the test ends."""
    server = servers[vendor]
    if vendor == "mysql":
        # read_only binds only users without SUPER (or READ ONLY ADMIN): an app's.
        server.sql(
            f"CREATE USER IF NOT EXISTS '{APP_USER['USER']}'@'%' IDENTIFIED BY "
            f"'{APP_USER['PASSWORD']}'; GRANT ALL ON {server.database}.* TO "
            f"'{APP_USER['USER']}'@'%'"
        )

    def set_read_only(on: bool) -> None:
        if vendor == "mysql":
            server.sql(f"SET GLOBAL read_only = {'ON' if on else 'OFF'}")
            return
        # Two calls: psql runs one -c string as one transaction, which ALTER SYSTEM refuses.
        server.sql(
            "ALTER SYSTEM SET default_transaction_read_only = on"
            if on
            else "ALTER SYSTEM RESET default_transaction_read_only"
        )
        server.sql("SELECT pg_reload_conf()")
        # A new session starts with the postmaster's values, and the postmaster
        # signals every session once it has reloaded: when a new one shows the
        # value, the held ones have the reload pending at their next statement.
        want = "on" if on else "off"
        while server.sql("SHOW default_transaction_read_only").strip() != want:
            pass

    yield set_read_only
    set_read_only(False)


def guarded(vendor: str, **connguard_options: Any) -> Any:
    extra = APP_USER if vendor == "mysql" else {}
    return make_wrapper(vendor, alias="failover", OPTIONS={"connguard": connguard_options}, **extra)


def insert(wrapper: Any, note: str) -> None:
    with wrapper.cursor() as cursor:
        cursor.execute("INSERT INTO testapp_entry (note) VALUES (%s)", [note])


def rows(vendor: str, note: str) -> int:
    return Entry.objects.using(STOCK_ALIAS[vendor]).filter(note=note).count()


@contextlib.contextmanager
def promoted_when_found(node: Callable[[bool], None], *, after: int) -> Iterator[list[Any]]:
    """Make the node writable at the ``after``-th time the guard finds it read-only."""
    found: list[Any] = []

    def receiver(sender: Any, reason: str, **kwargs: Any) -> None:
        if reason == "read_only" and kwargs["alias"] == "failover":
            found.append(kwargs)
            if len(found) == after:
                node(False)

    signals.connection_invalidated.connect(receiver)
    try:
        yield found
    finally:
        signals.connection_invalidated.disconnect(receiver)


def test_a_write_refused_by_a_demoted_node_runs_once_on_the_new_one(
    vendor: str, node: Callable[[bool], None]
) -> None:
    wrapper = guarded(vendor)
    select_one(wrapper)
    before = server_id(wrapper)
    node(True)
    # 1: the held connection's INSERT is refused; 2: the new connection lands on
    # the read-only node again and is refused at connect; then the node takes writes.
    with (
        promoted_when_found(node, after=2) as found,
        receiving(signals.connection_replaced, "failover") as replaced,
    ):
        insert(wrapper, "moved")
    assert rows(vendor, "moved") == 1
    assert len(found) == 2 and found[0]["error"] is not None and found[1]["error"] is None
    assert found[0]["address"] == f"127.0.0.1:{wrapper.settings_dict['PORT']}"
    assert [sent["reason"] for sent in replaced] == ["read_only"]
    stats = connguard.stats("failover")
    assert stats["read_only_nodes"] == 2
    assert stats["replaced_read_only"] == 1
    assert stats["retries"] == 1
    assert server_id(wrapper) != before
    assert wrapper.connguard_status()["node"] == "read-write"


def test_the_stock_backend_keeps_failing_on_the_demoted_node(
    vendor: str, node: Callable[[bool], None]
) -> None:
    extra = APP_USER if vendor == "mysql" else {}
    stock = make_wrapper(vendor, guarded=False, alias="failover_stock", **extra)
    select_one(stock)
    node(True)
    for attempt in ("first", "second"):
        with pytest.raises(DatabaseError):
            insert(stock, f"stock-{attempt}")
    assert rows(vendor, "stock-first") == rows(vendor, "stock-second") == 0


def test_inside_a_transaction_it_fails_and_the_first_use_after_moves(
    vendor: str, node: Callable[[bool], None]
) -> None:
    wrapper = guarded(vendor)
    select_one(wrapper)
    node(True)
    # (PostgreSQL fixes a transaction's read-only state when it starts.)
    wrapper.set_autocommit(False)
    with pytest.raises(TransactionLost):
        insert(wrapper, "in-transaction")
    # Still inside: nothing replaced behind the transaction's back.
    assert connguard.stats("failover").get("replaced", 0) == 0
    wrapper.rollback()
    wrapper.set_autocommit(True)
    with promoted_when_found(node, after=1):  # the new connection meets the read-only node
        insert(wrapper, "after")
    assert rows(vendor, "in-transaction") == 0
    assert rows(vendor, "after") == 1


def test_one_finding_reaches_the_alias_in_every_thread(
    vendor: str, node: Callable[[bool], None]
) -> None:
    other = guarded(vendor)
    select_one(other)
    other_before = server_id(other)
    wrapper = guarded(vendor)
    select_one(wrapper)
    node(True)
    with promoted_when_found(node, after=2):
        insert(wrapper, "finder")  # finds it, waits for the node to take writes
    node(True)  # the other connection is still on the read-only node
    done: list[int] = []
    with promoted_when_found(node, after=2) as found:
        # Its next use, a SELECT that would succeed there, checks the role first.
        other.inc_thread_sharing()  # made in this thread, used in another, as a pool's would
        thread = threading.Thread(target=lambda: done.append(select_one(other)))
        thread.start()
        thread.join()
        other.dec_thread_sharing()
    assert done == [1]
    assert found[0]["connection"] is other
    assert server_id(other) != other_before


def test_a_replica_alias_takes_read_only_as_it_is(
    vendor: str, node: Callable[[bool], None]
) -> None:
    wrapper = guarded(vendor, role="replica")
    select_one(wrapper)
    before = server_id(wrapper)
    node(True)
    with receiving(signals.connection_invalidated, "failover") as invalidated:
        with pytest.raises(DatabaseError) as refused:
            insert(wrapper, "replica")
        assert select_one(wrapper) == 1
    assert type(refused.value).__module__ == "django.db.utils"  # the driver's error, as stock
    assert invalidated == []
    assert server_id(wrapper) == before


def test_the_wait_ends_with_failover_timeout(vendor: str, node: Callable[[bool], None]) -> None:
    wrapper = guarded(vendor, failover_timeout=0.3)
    select_one(wrapper)
    node(True)
    with pytest.raises(FailoverTimeout) as timeout:
        insert(wrapper, "never")
    assert timeout.value.alias == "failover"
    assert timeout.value.node == f"127.0.0.1:{wrapper.settings_dict['PORT']}"
    assert 0.3 <= timeout.value.waited
    assert "no writable node at 127.0.0.1:" in str(timeout.value)
    assert rows(vendor, "never") == 0


def test_a_new_connection_to_a_read_only_node_is_refused_at_connect(
    vendor: str, node: Callable[[bool], None]
) -> None:
    node(True)
    wrapper = guarded(vendor)
    with promoted_when_found(node, after=1) as found:
        insert(wrapper, "at-connect")
    assert found[0]["error"] is None  # refused by its role, before any statement
    assert rows(vendor, "at-connect") == 1
    assert connguard.stats("failover")["read_only_nodes"] == 1
    assert "retries" not in connguard.stats("failover")


def test_failover_timeout_zero_does_not_wait(vendor: str, node: Callable[[bool], None]) -> None:
    node(True)
    wrapper = guarded(vendor, failover_timeout=0)
    with pytest.raises(FailoverTimeout) as timeout:
        select_one(wrapper)
    assert timeout.value.waited < 0.3
    assert ALIAS  # the shared test aliases are untouched: a per-test alias
