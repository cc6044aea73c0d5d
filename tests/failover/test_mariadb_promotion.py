"""A guarded worker rides out a real MariaDB promotion; the stock one stays broken.

The writers keep their connections open through the front (testbed.proxy, as
HAProxy or a virtual IP would), and ``promote()`` makes the old primary
read-only and the replica the primary, as a failover manager does: open
connections stay on the old node. Starts in about two seconds, so it runs in
the default suite, on both MySQL drivers.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from connguard import signals
from testbed.replication import ReplicatedMariaDB
from tests.failover.writer import Writer

TABLE = "connguard.failover_row"
GUARDED = "connguard.db.backends.mysql"
STOCK = "django.db.backends.mysql"


@pytest.fixture
def bed() -> Iterator[ReplicatedMariaDB]:
    with ReplicatedMariaDB() as bed:
        bed.sql(
            "primary",
            f"CREATE TABLE {TABLE} (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(64) NOT NULL)",
        )
        bed.wait_caught_up()
        yield bed


@contextlib.contextmanager
def found_read_only() -> Iterator[list[float]]:
    """When the guard found a connection on the read-only node (connection_invalidated)."""
    found: list[float] = []

    def receiver(sender: Any, reason: str, **kwargs: Any) -> None:
        if reason == "read_only":
            found.append(time.monotonic())

    signals.connection_invalidated.connect(receiver)
    try:
        yield found
    finally:
        signals.connection_invalidated.disconnect(receiver)


def rows_by_note(bed: ReplicatedMariaDB) -> collections.Counter[str]:
    out = bed.sql("primary", f"SELECT note FROM {TABLE}")
    return collections.Counter(out.split())


def test_promotion_loses_and_duplicates_nothing(
    bed: ReplicatedMariaDB, django_db_blocker: Any
) -> None:
    with django_db_blocker.unblock(), found_read_only() as found:
        guarded = Writer(bed.settings(GUARDED), "guarded", TABLE).start()
        stock = Writer(bed.settings(STOCK), "stock", TABLE).start()
        try:
            guarded.wait(count=20)
            stock.wait(count=20)
            promoting = time.monotonic()
            bed.promote()
            demoted = time.monotonic()  # read-only and retargeted by now
            guarded.wait(acknowledged_after=demoted, count=50)
            stock.wait(acknowledged_after=demoted, count=20, failed=True)
        finally:
            guarded.stop()
            stock.stop()
    on_new_primary = rows_by_note(bed)
    assert guarded.failed == []
    # Every acknowledged write is on the new primary, exactly once; nothing else is.
    assert {note: on_new_primary[note] for note in guarded.notes()} == dict.fromkeys(
        guarded.notes(), 1
    )
    assert sum(on_new_primary[n] for n in on_new_primary if n.startswith("guarded-")) == len(
        guarded.notes()
    )
    # The stock control keeps its connection on the old node and keeps failing there.
    assert [note for note, when in stock.acknowledged if when >= demoted] == []
    assert all("read-only" in str(exc) for _, _, exc in stock.failed)
    # Found by the first refused write, and written again on the new primary.
    assert found, "the guard never found the old primary read-only"
    detected = found[0]
    assert promoting <= detected <= demoted + 1.0
    recovery = guarded.first_after(detected)
    print(
        f"mariadb promotion: found {(detected - promoting) * 1000:.1f} ms after promote() "
        f"began; first write on the new primary {recovery * 1000:.1f} ms after that"
    )
