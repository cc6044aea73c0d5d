"""The failover test bed itself: replication, promote(), and what open connections see.

One bed for the module. The ``failover`` fixture promotes the replica once, with
connections held open through the front, then rejoins the old primary as a
replica: between tests the bed always has a primary and a replica that follows
it, so the tests pass in any order (pytest-randomly shuffles them).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connections
from django.db.utils import load_backend

from testbed.replication import ER_OPTION_PREVENTS_STATEMENT, ReplicatedMariaDB, ReplicationNode

TABLE = "connguard.failover_items"
DRIVERS = ("pymysql", "mysqlclient")
_notes = itertools.count()


def _driver(name: str) -> Any:
    if name == "pymysql":
        import pymysql

        return pymysql
    import MySQLdb

    if MySQLdb.__name__ != "MySQLdb":
        pytest.skip("CONNGUARD_TEST_MYSQL_DRIVER=pymysql installed PyMySQL as MySQLdb")
    return MySQLdb


def _connect(bed: ReplicatedMariaDB, driver: str) -> Any:
    """A connection as the app user through the front, straight from the driver."""
    return _driver(driver).connect(**bed.connect_kwargs(), autocommit=True)


def _query(connection: Any, statement: str, *args: object) -> list[tuple[Any, ...]]:
    with contextlib.closing(connection.cursor()) as cursor:
        cursor.execute(statement, args or None)
        return list(cursor.fetchall())


def _server_id(connection: Any) -> int:
    return int(_query(connection, "SELECT @@server_id")[0][0])


def _insert(connection: Any, label: str) -> str:
    note = f"{label}-{next(_notes)}"
    _query(connection, f"INSERT INTO {TABLE} (note) VALUES (%s)", note)
    return note


def _rows(node: ReplicationNode) -> list[tuple[str, str]]:
    out = node.sql(f"SELECT id, note FROM {TABLE} ORDER BY id")
    return [(ident, note) for ident, note in (line.split("\t") for line in out.splitlines())]


def _notes_on(node: ReplicationNode) -> set[str]:
    return {note for _, note in _rows(node)}


@pytest.fixture(scope="module")
def bed() -> Iterator[ReplicatedMariaDB]:
    with ReplicatedMariaDB() as bed:
        bed.sql(
            "primary",
            f"CREATE TABLE {TABLE} (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(64) NOT NULL)",
        )
        bed.wait_caught_up()
        yield bed


@dataclass
class Failover:
    old: ReplicationNode
    new: ReplicationNode
    held: dict[str, Any]  # driver -> a connection opened through the front before promote()
    written_before: set[str]  # what the held connections wrote before promote()
    rows_old: list[tuple[str, str]]  # each server's rows just after promote()
    rows_new: list[tuple[str, str]]


@pytest.fixture(scope="module")
def failover(bed: ReplicatedMariaDB) -> Iterator[Failover]:
    old = bed.primary
    held: dict[str, Any] = {}
    written: set[str] = set()
    try:
        for driver in DRIVERS:
            with contextlib.suppress(pytest.skip.Exception):
                held[driver] = _connect(bed, driver)
                written.add(_insert(held[driver], f"held-{driver}"))
        # No wait for the replica here: promote() must wait for these writes itself.
        new = bed.promote()
        rows_old, rows_new = _rows(old), _rows(new)
        bed.rejoin_old_primary_as_replica()
        yield Failover(old, new, held, written, rows_old, rows_new)
    finally:
        for connection in held.values():
            with contextlib.suppress(Exception):
                connection.close()


@pytest.mark.parametrize("driver", DRIVERS)
def test_write_through_front_lands_on_primary_and_reaches_replica(
    bed: ReplicatedMariaDB, driver: str
) -> None:
    connection = _connect(bed, driver)
    try:
        assert _server_id(connection) == bed.primary.server_id
        note = _insert(connection, f"front-{driver}")
    finally:
        connection.close()
    assert note in _notes_on(bed.primary)
    bed.wait_caught_up()
    assert note in _notes_on(bed.replica)


def test_app_user_is_plain_on_both_servers(bed: ReplicatedMariaDB) -> None:
    # read_only does not hold back SUPER or READ ONLY ADMIN: the app user must have neither.
    for node, host in itertools.product(bed.nodes, ("%", "127.0.0.1")):
        grants = node.sql(f"SHOW GRANTS FOR '{bed.app_user}'@'{host}'")
        assert "GRANT USAGE ON *.*" in grants
        assert "SUPER" not in grants and "READ ONLY ADMIN" not in grants
        assert "ALL PRIVILEGES ON *.*" not in grants
    assert bed.replica.read_only and bed.sql(bed.replica, "SELECT @@read_only").strip() == "1"
    assert bed.sql(bed.primary, "SELECT @@read_only").strip() == "0"


def test_settings_give_django_the_app_user_through_the_front(
    bed: ReplicatedMariaDB, django_db_blocker: Any
) -> None:
    settings_dict = connections.configure_settings({"default": bed.settings()})["default"]
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, "failover")
    try:
        with django_db_blocker.unblock(), wrapper.cursor() as cursor:
            cursor.execute("SELECT CURRENT_USER(), @@server_id")
            user, server_id = cursor.fetchone()
    finally:
        wrapper.close()
    # 'app'@'127.0.0.1', the more specific of the app user's two accounts.
    assert (user, server_id) == (f"{bed.app_user}@127.0.0.1", bed.primary.server_id)
    assert (settings_dict["HOST"], settings_dict["PORT"]) == (bed.front_host, str(bed.front_port))


@pytest.mark.parametrize("driver", DRIVERS)
def test_connection_held_over_promote_stays_on_old_primary_and_cannot_write(
    failover: Failover, driver: str
) -> None:
    module = _driver(driver)
    connection = failover.held[driver]
    # The session is still open, on the old primary: reads work, writes do not.
    assert _server_id(connection) == failover.old.server_id
    with pytest.raises(module.OperationalError) as caught:
        _insert(connection, f"held-{driver}-after")
    code, message = caught.value.args
    assert code == ER_OPTION_PREVENTS_STATEMENT
    assert "--read-only" in message


@pytest.mark.parametrize("driver", DRIVERS)
def test_new_connection_after_promote_writes_to_new_primary(
    bed: ReplicatedMariaDB, failover: Failover, driver: str
) -> None:
    connection = _connect(bed, driver)
    try:
        assert _server_id(connection) == failover.new.server_id != failover.old.server_id
        note = _insert(connection, f"new-{driver}")
    finally:
        connection.close()
    assert note in _notes_on(failover.new)


def test_promote_loses_nothing(bed: ReplicatedMariaDB, failover: Failover) -> None:
    assert failover.rows_old == failover.rows_new
    assert failover.written_before <= {note for _, note in failover.rows_new}
    # And the old primary, rejoined as a replica, follows the new one.
    bed.wait_caught_up()
    assert _rows(failover.old) == _rows(failover.new)


def test_switch_back_and_over_again(bed: ReplicatedMariaDB, failover: Failover) -> None:
    assert bed.promote() is failover.old
    # Back on the first primary: new connections go there, and so do the held
    # ones' writes, since that is the server they never left.
    connection = _connect(bed, "pymysql")
    try:
        assert _server_id(connection) == failover.old.server_id
        _insert(connection, "switched-back")
    finally:
        connection.close()
    _insert(failover.held["pymysql"], "held-writable-again")
    bed.rejoin_old_primary_as_replica()
    # Over again, so that the other tests find the roles the fixture left.
    assert bed.promote() is failover.new
    bed.rejoin_old_primary_as_replica()
    assert (bed.primary, bed.replica) == (failover.new, failover.old)
    assert _rows(failover.old) == _rows(failover.new)
