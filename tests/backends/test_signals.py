from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connguard import signals
from connguard.exceptions import OutcomeUnknown
from testbed.proxy import Proxy
from tests.helpers import kill, make_wrapper, select_one

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

ALL = [
    "connection_validated",
    "connection_invalidated",
    "connection_replaced",
    "connection_recycled",
    "statement_retried",
    "retry_refused",
    "fork_detected",
]


@pytest.fixture
def sent() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    receivers = []
    for name in ALL:

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            events.append((_name, kwargs))

        getattr(signals, name).connect(receiver, weak=False)
        receivers.append((name, receiver))
    yield events
    for name, receiver in receivers:
        getattr(signals, name).disconnect(receiver)


def names(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    return [(name, kwargs["reason"]) for name, kwargs in events]


def test_kill_between_jobs(vendor: str, servers: Any, sent: Any) -> None:
    wrapper = make_wrapper(vendor, alias="sig")
    select_one(wrapper)
    kill(servers, vendor, wrapper)
    select_one(wrapper)
    assert names(sent) == [
        ("connection_invalidated", "socket_closed"),
        ("connection_replaced", "socket_closed"),
    ]
    for _, kwargs in sent:
        assert kwargs["alias"] == "sig"
        assert kwargs["connection"] is wrapper
        assert kwargs["idle"] >= 0
        assert kwargs["age"] >= kwargs["idle"]
        assert kwargs["error"] is None


def test_validation_and_recycling(vendor: str, sent: Any) -> None:
    wrapper = make_wrapper(vendor, alias="sig", CONN_MAX_AGE=3600)
    select_one(wrapper)
    wrapper._connguard.last_used -= 30  # idle past validate_after (10 s)
    select_one(wrapper)
    wrapper._connguard.close_at = 0.0  # older than CONN_MAX_AGE
    select_one(wrapper)
    assert names(sent) == [
        ("connection_validated", "idle"),
        ("connection_recycled", "max_age"),
    ]
    assert sent[0][1]["ok"] is True
    assert sent[0][1]["idle"] >= 30


def test_retries(vendor: str, servers: Any, sent: Any) -> None:
    server = servers[vendor]
    proxy = Proxy(server.host, server.port)
    try:
        wrapper = make_wrapper(vendor, alias="sig", HOST=proxy.host, PORT=str(proxy.port))
        select_one(wrapper)
        proxy.cut_next_reply()
        select_one(wrapper)
        proxy.cut_next_reply()
        with pytest.raises(OutcomeUnknown), wrapper.cursor() as cursor:
            cursor.execute("UPDATE testapp_job SET runs = runs + 1")
    finally:
        proxy.close()
    got = names(sent)
    assert got[0] == ("connection_invalidated", "disconnect")
    assert got[1] == ("statement_retried", "read_only")
    assert got[2] == ("connection_replaced", "error")
    assert got[3] == ("connection_invalidated", "disconnect")
    assert got[4][0] == "retry_refused"
    assert got[4][1].startswith("outcome unknown")
    assert sent[1][1]["error"] is not None
