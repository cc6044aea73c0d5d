"""The failover test bed itself (testbed/patroni.py): a real Patroni cluster behind HAProxy.

Marked ``failover`` and skipped unless ``-m failover`` selects them
(tests/failover/conftest.py): one cluster takes seconds to start, each failover
a few more. Run them with

    .venv/bin/python -m pytest -q -p no:randomly -m failover tests/failover

Each test asks the cluster who leads now, so they pass in any order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.db.utils import load_backend

from testbed.patroni import DATABASE, PASSWORD, USER, PatroniCluster

psycopg = pytest.importorskip("psycopg")  # hidden when the suite runs on psycopg2

pytestmark = pytest.mark.failover


def _prepare(cluster: PatroniCluster) -> PatroniCluster:
    cluster.sql(cluster.leader(), "CREATE TABLE bed (id serial PRIMARY KEY, note text NOT NULL)")
    return cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[PatroniCluster]:
    with PatroniCluster() as started:
        yield _prepare(started)


@pytest.fixture(scope="module")
def cluster_keeping_sessions() -> Iterator[PatroniCluster]:
    with PatroniCluster(shutdown_sessions=False) as started:
        yield _prepare(started)


def _connect(cluster: PatroniCluster) -> Any:
    """A psycopg connection through HAProxy, in autocommit."""
    return psycopg.connect(
        host=cluster.host,
        port=cluster.port,
        user=USER,
        password=PASSWORD,
        dbname=DATABASE,
        autocommit=True,
        connect_timeout=5,
    )


def _write(cluster: PatroniCluster) -> tuple[str, int]:
    """Insert a row through HAProxy on a new connection; return it and the port that took it."""
    note = uuid.uuid4().hex
    with _connect(cluster) as conn:
        row = conn.execute(
            "INSERT INTO bed (note) VALUES (%s) RETURNING inet_server_port()", [note]
        ).fetchone()
    return note, int(row[0])


def _replicated(cluster: PatroniCluster, note: str) -> None:
    """The row is on every replica, and they are replicas (in recovery)."""
    cluster.wait_replicas_streaming()
    for name in cluster.replicas():
        assert cluster.sql(name, "SELECT pg_is_in_recovery()") == "t"
        assert cluster.sql(name, f"SELECT count(*) FROM bed WHERE note = '{note}'") == "1"


def _role(cluster: PatroniCluster, name: str) -> str:
    return next(str(m["role"]) for m in cluster.members() if m["name"] == name)


def test_a_write_through_haproxy_lands_on_the_leader_and_replicates(
    cluster: PatroniCluster,
) -> None:
    leader = cluster.leader()
    note, port = _write(cluster)
    assert port == cluster.node_port(leader)
    assert cluster.sql(leader, "SELECT pg_is_in_recovery()") == "f"
    _replicated(cluster, note)


def test_django_connects_through_haproxy(cluster: PatroniCluster, django_db_blocker: Any) -> None:
    settings_dict = connections.configure_settings({"default": cluster.settings()})["default"]
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, "failover")
    with django_db_blocker.unblock():
        try:
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT inet_server_port(), pg_is_in_recovery()")
                assert cursor.fetchone() == (cluster.node_port(cluster.leader()), False)
        finally:
            wrapper.close()


def test_switchover_moves_writes_and_the_old_leader_rejoins(cluster: PatroniCluster) -> None:
    old = cluster.leader()
    new = cluster.switchover()
    assert new != old
    assert cluster.leader() == new
    note, port = _write(cluster)
    assert port == cluster.node_port(new)
    _replicated(cluster, note)
    assert _role(cluster, old) == "replica"


def test_a_killed_leader_fails_over_and_rejoins(cluster: PatroniCluster) -> None:
    old = cluster.leader()
    timeline = cluster.sql(old, "SELECT timeline_id FROM pg_control_checkpoint()")
    new = cluster.kill_leader_postmaster()
    assert new != old
    assert cluster.leader() == new
    note, port = _write(cluster)
    assert port == cluster.node_port(new)
    _replicated(cluster, note)
    assert _role(cluster, old) == "replica"
    # The promotion started a new timeline, which the old leader now follows.
    assert int(cluster.sql(old, "SELECT received_tli FROM pg_stat_wal_receiver")) > int(timeline)


def test_a_read_only_node_keeps_its_sessions_and_refuses_writes(cluster: PatroniCluster) -> None:
    leader = cluster.leader()
    insert = "INSERT INTO bed (note) VALUES ('held') RETURNING inet_server_port()"
    with _connect(cluster) as conn:
        assert conn.execute(insert).fetchone() == (cluster.node_port(leader),)
        cluster.make_read_only_keeping_sessions(leader)
        try:
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as caught:
                conn.execute(insert)
            assert caught.value.sqlstate == "25006"
            assert not conn.closed
            assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            cluster.make_writable(leader)
        # The same session writes again.
        assert conn.execute(insert).fetchone() == (cluster.node_port(leader),)


def test_haproxy_cuts_the_sessions_of_a_node_it_marks_down(cluster: PatroniCluster) -> None:
    with _connect(cluster) as conn:
        conn.execute("SELECT 1")
        try:
            cluster.mark_down_in_haproxy(cluster.leader())
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        finally:
            # Until its next check HAProxy has no server: the next test would connect to none.
            cluster.wait_routed()


def test_without_shutdown_sessions_haproxy_leaves_them_open(
    cluster_keeping_sessions: PatroniCluster,
) -> None:
    cluster = cluster_keeping_sessions
    leader = cluster.leader()
    with _connect(cluster) as conn:
        conn.execute("SELECT 1")
        try:
            cluster.mark_down_in_haproxy(leader)
            port = conn.execute("SELECT inet_server_port()").fetchone()
            assert port == (cluster.node_port(leader),)
        finally:
            cluster.wait_routed()
