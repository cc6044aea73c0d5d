"""Fork safety: a parent that holds a connection forks children that use the database."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.servers import MariaDBServer, PostgreSQLServer
from tests.helpers import make_wrapper, select_one, server_id

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

CHILDREN = 3


def fork_children(wrapper: Any, *, close: bool = True) -> list[tuple[int, int]]:
    """Each child does what a forked worker does with the connection it finds:
    a query, then (unless ``close`` is false) the end-of-job close. Returns
    (exit status, server id) pairs."""
    results = []
    for _ in range(CHILDREN):
        read_end, write_end = os.pipe()
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() in a process with threads.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 1
            try:
                select_one(wrapper)
                os.write(write_end, str(server_id(wrapper)).encode())
                if close:
                    wrapper.close()
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        ident = os.read(read_end, 64)
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        results.append((os.waitstatus_to_exitcode(status), int(ident or -1)))
    return results


def test_stock_children_end_the_parents_session(vendor: str) -> None:
    """The hazard is real: the child's close() ends the session it shares with the parent."""
    from django.db import Error

    wrapper = make_wrapper(vendor, guarded=False)
    select_one(wrapper)
    parent = server_id(wrapper)
    results = fork_children(wrapper)
    assert results[0] == (0, parent)  # the first child used the parent's own session
    with pytest.raises(Error):
        select_one(wrapper)


def test_guarded_children_get_their_own_connections(vendor: str) -> None:
    import connguard

    wrapper = make_wrapper(vendor, alias="forked")
    select_one(wrapper)
    parent = server_id(wrapper)
    results = fork_children(wrapper)
    assert [code for code, _ in results] == [0] * CHILDREN
    assert parent not in {ident for _, ident in results}
    for _ in range(3):
        assert select_one(wrapper) == 1
    assert server_id(wrapper) == parent  # untouched: not even replaced
    assert connguard.stats("forked").get("replaced", 0) == 0


# ##### Under TLS: one query from a child corrupts the parent's stream #####


@pytest.fixture(scope="module")
def tls_servers() -> Iterator[dict[str, Any]]:
    servers = {"mysql": MariaDBServer(tls=True), "postgresql": PostgreSQLServer(tls=True)}
    try:
        for server in servers.values():
            server.start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def over_tls(tls_servers: dict[str, Any], vendor: str, *, guarded: bool, alias: str) -> Any:
    settings = tls_servers[vendor].settings()
    settings.pop("ENGINE")
    return make_wrapper(vendor, guarded=guarded, alias=alias, **settings)


def test_stock_child_query_corrupts_the_parents_tls_stream(
    vendor: str, tls_servers: dict[str, Any]
) -> None:
    from django.db import Error

    wrapper = over_tls(tls_servers, vendor, guarded=False, alias="tls-stock")
    select_one(wrapper)
    results = fork_children(wrapper, close=False)
    assert results[0][0] == 0  # the child's own query worked...
    with pytest.raises(Error):  # ...and broke the parent's session
        select_one(wrapper)


def test_guarded_children_under_tls(vendor: str, tls_servers: dict[str, Any]) -> None:
    wrapper = over_tls(tls_servers, vendor, guarded=True, alias="tls-guarded")
    select_one(wrapper)
    parent = server_id(wrapper)
    for close in (False, True):
        results = fork_children(wrapper, close=close)
        assert [code for code, _ in results] == [0] * CHILDREN
        assert parent not in {ident for _, ident in results}
    for _ in range(3):
        assert select_one(wrapper) == 1
    assert server_id(wrapper) == parent
