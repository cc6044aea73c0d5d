"""A non-database exception escapes while a statement is in flight.

A real SIGALRM handler raises, as Celery's soft time limit does. mysqlclient and
psycopg2 finish the C call before the handler runs, psycopg 3 and PyMySQL are
interrupted at once; in every case but psycopg2's a reply is left unread, and
the stock connection stays broken.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import Error, transaction

import connguard
from connguard.exceptions import TransactionLost
from tests.helpers import ALIAS, STOCK_ALIAS, make_wrapper

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

SLEEP = {"mysql": "SELECT SLEEP(1), 'first'", "postgresql": "SELECT pg_sleep(1), 'first'"}


class TimeLimitExceeded(Exception):
    """Stands for celery's SoftTimeLimitExceeded: an Exception raised by a signal handler."""


@pytest.fixture
def alarm() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise TimeLimitExceeded

    previous = signal.signal(signal.SIGALRM, handler)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def interrupted_query(wrapper: Any, vendor: str) -> None:
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    with pytest.raises(TimeLimitExceeded), wrapper.cursor() as cursor:
        cursor.execute(SLEEP[vendor])
        cursor.fetchall()


def second(wrapper: Any) -> object:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 'second'")
        return cursor.fetchone()[0]


def leaves_a_reply_unread(vendor: str) -> bool:
    return not (vendor == "postgresql" and settings.PG_DRIVER == "psycopg2")


def test_stock_connection_is_broken_by_an_interruption(vendor: str, alarm: None) -> None:
    wrapper = make_wrapper(vendor, guarded=False)
    second(wrapper)
    interrupted_query(wrapper, vendor)
    if not leaves_a_reply_unread(vendor):
        assert second(wrapper) == "second"  # psycopg2: the query had finished in C
        return
    for _ in range(2):
        with pytest.raises(Error):
            second(wrapper)


def test_guarded_connection_is_replaced_after_an_interruption(vendor: str, alarm: None) -> None:
    wrapper = make_wrapper(vendor, alias="alarm")
    second(wrapper)
    interrupted_query(wrapper, vendor)
    assert second(wrapper) == "second"
    assert second(wrapper) == "second"
    if leaves_a_reply_unread(vendor):
        stats = connguard.stats("alarm")
        assert stats["interrupted"] == 1
        assert stats["replaced_error"] == 1


def test_interruption_inside_atomic_never_reads_a_stale_reply(vendor: str, alarm: None) -> None:
    if not leaves_a_reply_unread(vendor):
        pytest.skip("psycopg2 completes the statement before the handler runs")
    from django.db import connections

    alias = ALIAS[vendor]
    wrapper = connections[alias]
    with pytest.raises(TransactionLost), transaction.atomic(using=alias):
        interrupted_query(wrapper, vendor)
        second(wrapper)  # refused before anything is sent, not answered with 'first'
    assert second(wrapper) == "second"


def test_stock_interruption_inside_atomic(vendor: str, alarm: None) -> None:
    if not leaves_a_reply_unread(vendor):
        pytest.skip("psycopg2 completes the statement before the handler runs")
    from django.db import connections

    alias = STOCK_ALIAS[vendor]
    wrapper = connections[alias]
    with pytest.raises(Error), transaction.atomic(using=alias):
        interrupted_query(wrapper, vendor)
        second(wrapper)
