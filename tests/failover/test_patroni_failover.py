"""A guarded worker rides out a real Patroni switchover and failover; the stock one does not.

A 2-node PostgreSQL 15 cluster managed by Patroni (etcd as its store), behind
HAProxy routing to the leader by Patroni's REST health check: the standard
production layout (testbed/patroni.py). While a guarded and a stock writer
insert keyed rows through HAProxy, the cluster goes through a planned
switchover, a crash of the leader's postmaster, and a leader that turns
read-only under its open sessions before a switchover. Marked ``failover``:
``scripts/failover`` runs them (``-m failover``).
"""

from __future__ import annotations

import collections
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connguard import signals
from connguard.exceptions import OutcomeUnknown
from testbed.patroni import PatroniCluster
from tests.failover.writer import Writer

pytest.importorskip("psycopg")  # the cluster's tests run on psycopg 3; psycopg2 runs hide it

pytestmark = pytest.mark.failover

GUARDED = "connguard.db.backends.postgresql"
STOCK = "django.db.backends.postgresql"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PatroniCluster]:
    with PatroniCluster() as started:
        yield started


@pytest.fixture
def table(cluster: PatroniCluster) -> str:
    name = f"failover_{uuid.uuid4().hex[:8]}"
    cluster.sql(
        cluster.leader(), f"CREATE TABLE {name} (id serial PRIMARY KEY, note text NOT NULL)"
    )
    cluster.wait_replicas_streaming()
    return name


def run(
    cluster: PatroniCluster,
    table: str,
    blocker: Any,
    fail_over: Callable[[list[float]], None],
    **settings: Any,
) -> tuple[Writer, Writer, list[float], float]:
    """Both writers through HAProxy around ``fail_over``; (guarded, stock, when the
    guard found the node gone or read-only, when the failover began)."""
    found: list[float] = []

    def receiver(sender: Any, reason: str, **kwargs: Any) -> None:
        found.append(time.monotonic())

    signals.connection_invalidated.connect(receiver)
    try:
        with blocker.unblock():
            guarded = Writer(cluster.settings(GUARDED, **settings), "guarded", table).start()
            stock = Writer(cluster.settings(STOCK, **settings), "stock", table).start()
            try:
                guarded.wait(count=20)
                stock.wait(count=20)
                began = time.monotonic()
                fail_over(found)
                over = time.monotonic()
                guarded.wait(acknowledged_after=over, count=50)
                stock.wait(acknowledged_after=began, count=5, failed=True)
            finally:
                guarded.stop()
                stock.stop()
    finally:
        signals.connection_invalidated.disconnect(receiver)
    return guarded, stock, found, began


def check(cluster: PatroniCluster, table: str, guarded: Writer, stock: Writer, began: float,
          found: list[float], what: str, in_flight: int = 0) -> None:  # fmt: skip
    """``in_flight``: writes that may fail as OutcomeUnknown, the server gone while
    they ran (a crash): the guard cannot know whether they committed, and says so."""
    out = cluster.sql(cluster.leader(), f"SELECT note FROM {table}")
    on_leader = collections.Counter(out.split())
    assert len(guarded.failed) <= in_flight, "".join(
        traceback.format_exception(guarded.failed[0][2])
    )
    for note, _, exc in guarded.failed:
        assert isinstance(exc, OutcomeUnknown) and on_leader[note] <= 1
    # Every acknowledged write is on the new leader, exactly once; nothing else is.
    assert {note: on_leader[note] for note in guarded.notes()} == dict.fromkeys(guarded.notes(), 1)
    assert sum(n for note, n in on_leader.items() if note.startswith("guarded-")) == len(
        guarded.notes()
    )
    # The stock control: broken from the failover on, never written again.
    assert [note for note, when in stock.acknowledged if when >= began + 60] == []
    assert stock.failed
    detected = min(when for when in found if when >= began)
    print(
        f"patroni {what}: found {(detected - began) * 1000:.0f} ms after it began; first "
        f"write on the new leader {guarded.first_after(detected) * 1000:.0f} ms after that"
    )


def test_switchover(cluster: PatroniCluster, table: str, django_db_blocker: Any) -> None:
    old = cluster.leader()
    guarded, stock, found, began = run(
        cluster, table, django_db_blocker, lambda found: cluster.switchover()
    )
    assert cluster.leader() != old
    # A write running when the old leader shuts down ("terminating connection due
    # to administrator command") may or may not have committed: OutcomeUnknown.
    check(cluster, table, guarded, stock, began, found, "switchover", in_flight=1)


def test_leader_crash(cluster: PatroniCluster, table: str, django_db_blocker: Any) -> None:
    old = cluster.leader()
    guarded, stock, found, began = run(
        cluster, table, django_db_blocker, lambda found: cluster.kill_leader_postmaster()
    )
    assert cluster.leader() != old
    cluster.wait_replicas_streaming()  # the crashed node is back, as a replica
    check(cluster, table, guarded, stock, began, found, "crash of the leader", in_flight=1)


def test_a_leader_turned_read_only_under_its_sessions(
    cluster: PatroniCluster, table: str, django_db_blocker: Any
) -> None:
    old = cluster.leader()

    def read_only_then_switchover(found: list[float]) -> None:
        # The sessions stay open and refuse writes (25006); the guard finds it by
        # the first refusal and waits for a writable node, which the switchover
        # brings: only once the guard has found it, so that it is seen waiting.
        cluster.make_read_only_keeping_sessions(old)
        while not found:
            time.sleep(0.01)  # the writer thread signals; nothing else to wait on here
        cluster.switchover()
        cluster.wait_replicas_streaming()  # the old leader is back, as a replica
        cluster.make_writable(old)  # or it would refuse writes once it leads again

    guarded, stock, found, began = run(cluster, table, django_db_blocker, read_only_then_switchover)
    assert cluster.leader() != old
    check(cluster, table, guarded, stock, began, found, "read-only leader, then switchover")


def test_several_hosts_with_target_session_attrs(
    cluster: PatroniCluster, table: str, django_db_blocker: Any
) -> None:
    """libpq picks the writable host from a list; the guard rides out the switchover."""
    old = cluster.leader()
    hosts = {
        "HOST": ",".join(cluster.host for _ in cluster.nodes),
        "PORT": ",".join(str(cluster.node_port(name)) for name in cluster.nodes),
        "OPTIONS": {"target_session_attrs": "read-write"},
    }
    guarded, stock, found, began = run(
        cluster, table, django_db_blocker, lambda found: cluster.switchover(), **hosts
    )
    assert cluster.leader() != old
    check(cluster, table, guarded, stock, began, found, "switchover, several hosts", in_flight=1)
