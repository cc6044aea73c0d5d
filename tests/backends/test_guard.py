"""The guard's own mechanisms, one at a time, against the real servers."""

from __future__ import annotations

import select
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

import connguard
from connguard import signals
from testbed.proxy import Proxy
from tests.helpers import (
    ALIAS,
    fileno,
    kill,
    make_wrapper,
    receiving,
    select_one,
    server_id,
)
from tests.testapp.models import Job

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def run_jobs(wrapper: Any, job_id: int, count: int) -> None:
    """A busy worker: a SELECT by primary key and an UPDATE per job."""
    for _ in range(count):
        with wrapper.cursor() as cursor:
            cursor.execute(f"SELECT {_key(wrapper)} FROM testapp_job WHERE id = %s", [job_id])
            cursor.fetchone()
        with wrapper.cursor() as cursor:
            cursor.execute("UPDATE testapp_job SET runs = runs + 1 WHERE id = %s", [job_id])


def _key(wrapper: Any) -> str:
    return wrapper.ops.quote_name("key")


def bytes_sent_for_jobs(proxy: Proxy, wrapper: Any, job_id: int, count: int = 200) -> int:
    select_one(wrapper)  # connect (and, for connguard, learn the server timeout) first
    proxy.reset_counters()
    run_jobs(wrapper, job_id, count)
    return proxy.bytes_up


# ##### Zero extra round trips while busy #####


def test_busy_connection_costs_no_extra_round_trip(vendor: str, proxy: Proxy) -> None:
    job = Job.objects.using(ALIAS[vendor]).create(key="busy")
    over_proxy = {"HOST": proxy.host, "PORT": str(proxy.port)}
    stock = bytes_sent_for_jobs(proxy, make_wrapper(vendor, guarded=False, **over_proxy), job.pk)
    guarded = bytes_sent_for_jobs(proxy, make_wrapper(vendor, alias="busy", **over_proxy), job.pk)
    # Byte for byte what stock Django sends: no ping, no extra statement.
    assert guarded == stock
    assert "validations" not in connguard.stats("busy")
    # The measure can see a ping: validating at every use sends more.
    pinging = bytes_sent_for_jobs(
        proxy,
        make_wrapper(
            vendor, alias="ping", OPTIONS={"connguard": {"validate_after": 0}}, **over_proxy
        ),
        job.pk,
    )
    assert pinging > stock
    assert connguard.stats("ping")["validations"] == 400


# ##### Idle-aware validation #####


def test_validates_after_idle_and_keeps_a_live_connection(vendor: str) -> None:
    # Generous, so that "not yet" holds however slow the machine is; the idle
    # time past it is set on the guard's clock rather than waited for.
    wrapper = make_wrapper(vendor, alias="idle", OPTIONS={"connguard": {"validate_after": 30}})
    with receiving(signals.connection_validated, "idle") as validated:
        select_one(wrapper)
        first = server_id(wrapper)
        select_one(wrapper)
        assert "validations" not in connguard.stats("idle")
        assert validated == []
        wrapper._connguard.last_used -= 31  # idle past validate_after, as far as it can tell
        select_one(wrapper)
    assert connguard.stats("idle")["validations"] == 1
    assert [(v["reason"], v["ok"]) for v in validated] == [("idle", True)]
    assert validated[0]["idle"] >= 31
    assert server_id(wrapper) == first


def test_replaces_a_connection_that_fails_validation(vendor: str, proxy: Proxy) -> None:
    """With the socket check off, only the ping can find a dead connection."""
    wrapper = make_wrapper(
        vendor,
        alias="silent",
        HOST=proxy.host,
        PORT=str(proxy.port),
        OPTIONS={"connguard": {"validate_after": 0, "socket_check": False}},
    )
    select_one(wrapper)
    proxy.reset_all()
    assert select_one(wrapper) == 1
    stats = connguard.stats("silent")
    assert stats["validations_failed"] == 1
    assert stats["replaced_validation_failed"] == 1


def test_validation_off(vendor: str) -> None:
    wrapper = make_wrapper(vendor, alias="off", OPTIONS={"connguard": {"validate_after": None}})
    select_one(wrapper)
    wrapper._connguard.last_used -= 3600  # an hour idle, without waiting for it
    select_one(wrapper)
    assert "validations" not in connguard.stats("off")


def test_conn_health_checks_validates_after_idle_without_request_signals(vendor: str) -> None:
    wrapper = make_wrapper(vendor, alias="hc", CONN_HEALTH_CHECKS=True)
    select_one(wrapper)
    wrapper._connguard.last_used -= 60
    select_one(wrapper)
    assert connguard.stats("hc")["validations"] == 1


def test_conn_health_checks_conflicts_with_validation_off(vendor: str) -> None:
    # The wrapper builds (so django.setup() and every management command still run,
    # and `manage.py check` reports it); its first connect refuses.
    wrapper = make_wrapper(
        vendor, CONN_HEALTH_CHECKS=True, OPTIONS={"connguard": {"validate_after": None}}
    )
    with pytest.raises(ImproperlyConfigured, match="CONN_HEALTH_CHECKS"):
        select_one(wrapper)
    assert wrapper.connection is None


# ##### The socket check #####


def test_postgresql_notification_is_verified_not_replaced(servers: Any) -> None:
    wrapper = make_wrapper("postgresql", alias="notify")
    with wrapper.cursor() as cursor:
        cursor.execute("LISTEN connguard_channel")
    first = server_id(wrapper)
    servers["postgresql"].sql("NOTIFY connguard_channel, 'hello'")
    poller = select.poll()
    poller.register(fileno(wrapper), select.POLLIN)
    assert poller.poll(5000), "the notification never arrived"
    select_one(wrapper)
    assert server_id(wrapper) == first
    stats = connguard.stats("notify")
    assert stats["validations"] == 1
    assert "replaced" not in stats


def _blind_wrapper(vendor: str, alias: str) -> Any:
    """A guard that cannot see a kill before use: no socket check, no idle ping."""
    return make_wrapper(
        vendor, alias=alias, OPTIONS={"connguard": {"socket_check": False, "validate_after": None}}
    )


def test_undetected_kill_read_only_statement_is_retried(vendor: str, servers: Any) -> None:
    wrapper = _blind_wrapper(vendor, "blind-read")
    select_one(wrapper)
    kill(servers, vendor, wrapper)
    assert select_one(wrapper) == 1  # failed on the dead connection, retried on a fresh one
    stats = connguard.stats("blind-read")
    assert stats["retries"] == 1
    assert stats["disconnects"] == 1


def test_undetected_kill_write_is_not_retried(vendor: str, servers: Any) -> None:
    from connguard.exceptions import OutcomeUnknown

    wrapper = _blind_wrapper(vendor, "blind-write")
    select_one(wrapper)
    kill(servers, vendor, wrapper)
    with pytest.raises(OutcomeUnknown) as info, wrapper.cursor() as cursor:
        cursor.execute("INSERT INTO testapp_job (" + _key(wrapper) + ", runs) VALUES ('w', 0)")
    assert "outcome unknown: the connection was lost after the statement was sent" in str(
        info.value
    )
    assert "'blind-write'" in str(info.value)
    assert connguard.stats("blind-write")["retries_refused"] == 1
    assert select_one(wrapper) == 1  # replaced at the next use


# ##### Server-timeout awareness #####


SHORT_IDLE_LIMIT = {
    "mysql": {"init_command": "SET SESSION wait_timeout = 1"},
    "postgresql": {"options": "-c idle_session_timeout=1000"},
}


def test_learns_the_server_idle_limit_and_replaces_without_ping(vendor: str) -> None:
    wrapper = make_wrapper(vendor, alias="limit", OPTIONS=SHORT_IDLE_LIMIT[vendor])
    select_one(wrapper)
    assert wrapper._connguard.server_timeout == 1.0
    first = server_id(wrapper)
    wrapper._connguard.last_used -= 1.5  # idle past the limit, without waiting
    select_one(wrapper)
    assert server_id(wrapper) != first
    stats = connguard.stats("limit")
    assert stats["replaced_server_timeout"] == 1
    assert "validations" not in stats


@pytest.mark.parametrize(("setting", "seconds"), [("1500", 1.5), ("5400000", 5400.0)])
def test_postgresql_idle_limit_in_other_units(vendor: str, setting: str, seconds: float) -> None:
    """The server shows these as "1500ms" and "90min"."""
    if vendor != "postgresql":
        pytest.skip("idle_session_timeout is PostgreSQL's")
    options = {"options": f"-c idle_session_timeout={setting}"}
    wrapper = make_wrapper(vendor, alias="limit", OPTIONS=options)
    select_one(wrapper)
    assert wrapper._connguard.server_timeout == seconds


def test_default_server_idle_limit(vendor: str) -> None:
    wrapper = make_wrapper(vendor)
    select_one(wrapper)
    # MariaDB's default wait_timeout is 8 hours; PostgreSQL's idle_session_timeout 0 (none).
    assert wrapper._connguard.server_timeout == (28800.0 if vendor == "mysql" else None)


def test_declared_server_timeout_skips_the_query(vendor: str, proxy: Proxy) -> None:
    over_proxy = {"HOST": proxy.host, "PORT": str(proxy.port)}
    auto = make_wrapper(vendor, **over_proxy)
    select_one(auto)
    auto_bytes = proxy.bytes_up
    auto.close()
    proxy.reset_counters()
    declared = make_wrapper(vendor, OPTIONS={"connguard": {"server_timeout": 300}}, **over_proxy)
    select_one(declared)
    assert declared._connguard.server_timeout == 300.0
    assert proxy.bytes_up < auto_bytes


# ##### Settings #####


def test_options_never_reach_the_driver(vendor: str) -> None:
    wrapper = make_wrapper(vendor, OPTIONS={"connguard": {"validate_after": 5}})
    assert "connguard" not in wrapper.get_connection_params()
    assert select_one(wrapper) == 1
    assert wrapper.connguard_options.validate_after == 5.0


def test_bad_option_names_the_alias_and_the_key(vendor: str) -> None:
    wrapper = make_wrapper(vendor, alias="bad", OPTIONS={"connguard": {"validate_afer": 5}})
    with pytest.raises(ImproperlyConfigured) as info:
        select_one(wrapper)
    assert wrapper.connection is None
    assert "'bad'" in str(info.value)
    assert "'validate_afer'" in str(info.value)
    assert "'validate_after'" in str(info.value)


def test_disabled_guard_behaves_like_stock(vendor: str, servers: Any) -> None:
    from django.db import Error

    wrapper = make_wrapper(vendor, alias="disabled", OPTIONS={"connguard": {"enabled": False}})
    select_one(wrapper)
    kill(servers, vendor, wrapper)
    for _ in range(2):
        with pytest.raises(Error):
            select_one(wrapper)
    assert connguard.stats("disabled") == {"connections_opened": 1}


def test_settings_alias_is_guarded() -> None:
    assert type(connections["default"]).__module__ == "connguard.db.backends.mysql.base"
    assert type(connections["postgresql"]).__module__ == "connguard.db.backends.postgresql.base"


def test_autocommit_off_gets_no_stray_transaction_from_the_guard() -> None:
    """The connect-time query must not leave a transaction open (AUTOCOMMIT=False)."""
    wrapper = make_wrapper("postgresql", AUTOCOMMIT=False)
    wrapper.ensure_connection()
    raw = wrapper.connection
    status = raw.info.transaction_status if hasattr(raw, "info") else raw.get_transaction_status()
    assert int(status) == 0  # idle: no transaction open
    assert wrapper._connguard.server_timeout is None
