"""The job-boundary API (connguard.job, as_jobs, ThreadPoolExecutor), on the real servers.

The settings aliases are used (job() tidies ``django.db.connections``): the
guarded ones and Django's stock ones, on both vendors.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import Error, close_old_connections, connections, transaction
from django.db.backends.signals import connection_created

import connguard
from connguard.exceptions import OutcomeUnknown
from connguard.jobs import _note_connection, job_finished, job_started, tidy_connections
from tests.helpers import ALIAS, STOCK_ALIAS, kill, kill_while_running, select_one, server_id
from tests.testapp.models import Job

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def opened(alias: str) -> int:
    return connguard.stats(alias).get("connections_opened", 0)


def boundary_closes(alias: str) -> dict[str, int]:
    return {
        key.removeprefix("closed_at_job_boundary_"): count
        for key, count in connguard.stats(alias).items()
        if key.startswith("closed_at_job_boundary_")
    }


# ##### CONN_MAX_AGE #####


@pytest.mark.parametrize("age", [None, 60])
def test_healthy_connection_is_kept_across_jobs(vendor: str, max_age: Any, age: Any) -> None:
    alias = ALIAS[vendor]
    max_age(alias, age)
    ids = []
    for _ in range(3):
        with connguard.job():
            ids.append(server_id_of(alias))
    assert len(set(ids)) == 1
    assert opened(alias) == 1  # never a reconnect per job
    assert connections[alias].connection is not None


def test_conn_max_age_zero_closes_at_the_end_of_each_job(vendor: str, max_age: Any) -> None:
    alias = ALIAS[vendor]
    max_age(alias, 0)
    for _ in range(3):
        with connguard.job():
            select_one(connections[alias])
            assert connections[alias].connection is not None
        assert connections[alias].connection is None
    assert opened(alias) == 3
    assert boundary_closes(alias) == {"max_age": 3}


def test_conn_max_age_zero_outside_jobs_keeps_one_connection(vendor: str, max_age: Any) -> None:
    """Not a reconnect per query: a loop without job() keeps its connection."""
    alias = ALIAS[vendor]
    max_age(alias, 0)
    for _ in range(3):
        select_one(connections[alias])
    assert opened(alias) == 1


def test_expired_connection_is_closed_at_the_boundary(vendor: str, max_age: Any) -> None:
    alias = ALIAS[vendor]
    max_age(alias, 3600)
    with connguard.job():
        select_one(connections[alias])
    # An hour later, as far as the connection can tell.
    connections[alias].close_at = time.monotonic() - 1
    with connguard.job():
        assert connections[alias].connection is None
        select_one(connections[alias])
    assert opened(alias) == 2
    assert boundary_closes(alias) == {"max_age": 1}


def test_job_boundary_false_keeps_zero_max_age_connections(vendor: str, max_age: Any) -> None:
    alias = ALIAS[vendor]
    max_age(alias, 0)
    select_one(connections[alias])
    tidy_connections(using=alias, job_boundary=False)
    assert connections[alias].connection is not None
    tidy_connections(using=alias)
    assert connections[alias].connection is None


# ##### Which connections a job tidies #####


def in_new_thread(func: Callable[[], Any]) -> Any:
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(func())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def test_connection_opened_before_connguard_listened_is_tidied(vendor: str, max_age: Any) -> None:
    """job() learns of connections from connection_created; older ones are looked up once."""
    alias = ALIAS[vendor]
    max_age(alias, 0)

    def task() -> tuple[bool, bool]:
        # As if connguard.jobs were imported only after this thread connected.
        assert connection_created.disconnect(dispatch_uid="connguard.jobs")
        try:
            select_one(connections[alias])
        finally:
            connection_created.connect(_note_connection, dispatch_uid="connguard.jobs")
        with connguard.job():
            pass
        first = connections[alias].connection is None
        select_one(connections[alias])  # noted by the receiver this time
        with connguard.job():
            pass
        return first, connections[alias].connection is None

    assert in_new_thread(task) == (True, True)
    assert boundary_closes(alias) == {"max_age": 2}


def test_wrapper_shared_from_another_thread_is_left_to_it(vendor: str, max_age: Any) -> None:
    alias = ALIAS[vendor]
    max_age(alias, 0)
    select_one(connections[alias])  # this thread's own wrapper, noted
    theirs = in_new_thread(lambda: connections[alias])
    assert theirs is not connections[alias]
    theirs.inc_thread_sharing()
    try:
        select_one(theirs)  # connected from this thread
        with connguard.job():
            pass
        # Ours was closed at the boundary; theirs is not ours to close.
        assert connections[alias].connection is None
        assert theirs.connection is not None
    finally:
        theirs.close()
        theirs.dec_thread_sharing()


# ##### Errors #####


def server_id_of(alias: str) -> int:
    select_one(connections[alias])
    return server_id(connections[alias])


def test_stock_connection_killed_in_a_job_is_closed_at_its_end(vendor: str, servers: Any) -> None:
    """Django's stock backend stays broken in a loop; job() ends that after one job."""
    alias = STOCK_ALIAS[vendor]
    select_one(connections[alias])
    kill(servers, vendor, connections[alias])
    with connguard.job(), pytest.raises(Error):
        select_one(connections[alias])
    assert connections[alias].connection is None
    assert boundary_closes(alias) == {"unusable": 1}
    with connguard.job():
        assert select_one(connections[alias]) == 1


def test_usable_connection_after_an_error_is_kept(vendor: str) -> None:
    alias = STOCK_ALIAS[vendor]
    before = server_id_of(alias)
    with connguard.job(), pytest.raises(Error), connections[alias].cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")
    assert connections[alias].errors_occurred is False
    assert server_id_of(alias) == before
    assert boundary_closes(alias) == {}


# Not read-only statements, so the guard does not retry them when they are lost.
SLEEP = {"mysql": "DO SLEEP(5)", "postgresql": "DO $$ BEGIN PERFORM pg_sleep(5); END $$"}


def test_guarded_connection_lost_in_a_job_is_closed_without_a_ping(
    vendor: str, servers: Any
) -> None:
    alias = ALIAS[vendor]
    select_one(connections[alias])
    # Killed once the statement is running on the server.
    thread = kill_while_running(servers, vendor, connections[alias], SLEEP[vendor])
    try:
        with connguard.job(), pytest.raises(OutcomeUnknown), connections[alias].cursor() as cursor:
            cursor.execute(SLEEP[vendor])
    finally:
        thread.join()
    assert connections[alias].connection is None
    assert boundary_closes(alias) == {"error": 1}
    assert "validations" not in connguard.stats(alias)


def test_health_checks_are_rearmed_at_each_boundary(
    vendor: str, servers: Any, max_age: Any
) -> None:
    """Stock CONN_HEALTH_CHECKS, which outside requests checks only once ever,
    checks at the first use in each job."""
    alias = STOCK_ALIAS[vendor]
    settings_dict = connections[alias].settings_dict
    settings_dict["CONN_HEALTH_CHECKS"] = True
    try:
        max_age(alias, None)
        with connguard.job():
            select_one(connections[alias])
        kill(servers, vendor, connections[alias])
        with connguard.job():
            assert select_one(connections[alias]) == 1
    finally:
        settings_dict["CONN_HEALTH_CHECKS"] = False


def test_query_log_is_reset(vendor: str) -> None:
    wrapper = connections[ALIAS[vendor]]
    wrapper.force_debug_cursor = True
    try:
        with connguard.job():
            select_one(wrapper)
            assert len(wrapper.queries) >= 1
        assert wrapper.queries == []
    finally:
        wrapper.force_debug_cursor = False


# ##### Transactions and nesting #####


def test_close_old_connections_inside_atomic_loses_the_transaction(vendor: str) -> None:
    """Why job() exists: Django's own hook destroys an open atomic block."""
    alias = ALIAS[vendor]
    with pytest.raises(Error), transaction.atomic(using=alias):
        Job.objects.using(alias).create(key="lost")
        close_old_connections()
        Job.objects.using(alias).create(key="after")
    assert not Job.objects.using(alias).filter(key="lost").exists()


def test_job_inside_atomic_leaves_the_transaction_alone(vendor: str, max_age: Any) -> None:
    alias = ALIAS[vendor]
    max_age(alias, 0)
    with transaction.atomic(using=alias):
        Job.objects.using(alias).create(key="outer")
        before = server_id(connections[alias])
        with connguard.job():
            Job.objects.using(alias).create(key="inner")
        assert connections[alias].connection is not None
        assert server_id(connections[alias]) == before
        Job.objects.using(alias).create(key="after")
    assert Job.objects.using(alias).count() == 3


def test_manual_transaction_is_left_alone(vendor: str, max_age: Any) -> None:
    alias = ALIAS[vendor]
    max_age(alias, 0)
    transaction.set_autocommit(False, using=alias)
    try:
        Job.objects.using(alias).create(key="manual")
        with connguard.job():
            pass
        assert connections[alias].connection is not None
        transaction.commit(using=alias)
    finally:
        transaction.set_autocommit(True, using=alias)
    assert Job.objects.using(alias).filter(key="manual").exists()


def test_nested_jobs_tidy_only_at_the_outermost_boundary(vendor: str, max_age: Any) -> None:
    alias = ALIAS[vendor]
    max_age(alias, 0)

    @connguard.job
    def inner() -> int:
        return server_id_of(alias)

    with connguard.job():
        first = server_id_of(alias)
        assert inner() == first
        assert connections[alias].connection is not None
        assert inner() == first
    assert connections[alias].connection is None
    assert opened(alias) == 1


def test_queue_boundaries_survive_a_lost_end_hook(vendor: str, max_age: Any) -> None:
    """A queue that loses its "finished" hook must not disable tidying."""
    alias = ALIAS[vendor]
    max_age(alias, 0)
    job_started()
    select_one(connections[alias])
    with connguard.job():  # nested in the queue's job: no tidying
        pass
    assert connections[alias].connection is not None
    job_started()  # the previous job never finished
    assert connections[alias].connection is None
    select_one(connections[alias])
    job_finished()
    assert connections[alias].connection is None


# ##### Forms of job() #####


def test_decorator_forms_keep_the_function(vendor: str) -> None:
    alias = ALIAS[vendor]

    @connguard.job
    def plain(value: int) -> int:
        """Doc."""
        return value + select_one(connections[alias])

    @connguard.job()
    def called(value: int) -> int:
        return value * 2

    assert plain(1) == 2
    assert plain.__name__ == "plain" and plain.__doc__ == "Doc."
    assert called(4) == 8


def test_async_job(vendor: str, max_age: Any) -> None:
    alias = ALIAS[vendor]
    max_age(alias, 0)

    def state() -> tuple[int, bool]:
        return select_one(connections[alias]), connections[alias].connection is not None

    def closed() -> bool:
        return connections[alias].connection is None

    @connguard.job
    async def decorated() -> tuple[int, bool]:
        return await sync_to_async(state)()

    async def main() -> list[Any]:
        results: list[Any] = []
        async with connguard.job():
            results.append(await sync_to_async(state)())
        results.append(await sync_to_async(closed)())
        results.append(await decorated())
        results.append(await sync_to_async(closed)())
        return results

    assert asyncio.run(main()) == [(1, True), True, (1, True), True]


# ##### Consumer loops #####


def test_as_jobs_wraps_each_message(vendor: str, max_age: Any) -> None:
    alias = ALIAS[vendor]
    max_age(alias, 0)
    between: list[bool] = []

    def consumer() -> Iterator[int]:
        for message in range(3):
            # Polling for the next message happens between jobs.
            between.append(connections[alias].connection is None)
            yield message

    handled = []
    for message in connguard.as_jobs(consumer()):
        select_one(connections[alias])
        handled.append(message)
    assert handled == [0, 1, 2]
    assert between == [True, True, True]
    assert connections[alias].connection is None
    assert opened(alias) == 3


def test_as_jobs_ends_the_job_when_the_loop_breaks(vendor: str, max_age: Any) -> None:
    alias = ALIAS[vendor]
    max_age(alias, 0)
    for _message in connguard.as_jobs(iter(range(10))):
        select_one(connections[alias])
        break
    assert connections[alias].connection is None


def test_as_jobs_reuses_a_persistent_connection(vendor: str) -> None:
    alias = ALIAS[vendor]
    # From no connection: the previous test's teardown (a TransactionTestCase
    # flush, after this module's fixtures have closed everything) may have
    # opened one, which the loop would reuse without opening any.
    connections[alias].close()
    connguard.reset_stats(alias)
    ids = {server_id_of(alias) for _ in connguard.as_jobs(range(3))}
    assert len(ids) == 1
    assert opened(alias) == 1


# ##### Thread pools #####


def thread_task(alias: str) -> tuple[int, int]:
    return threading.get_ident(), server_id_of(alias)


def test_executor_runs_jobs_and_closes_thread_connections(vendor: str, servers: Any) -> None:
    alias = ALIAS[vendor]
    with connguard.ThreadPoolExecutor(max_workers=2) as executor:
        results = list(executor.map(thread_task, [alias] * 6))
    threads = {thread for thread, _ in results}
    idents = {ident for _, ident in results}
    # Each worker thread kept one connection for all its tasks...
    assert len(idents) == len(threads)
    assert opened(alias) == len(threads)
    # ...and the pool closed them at shutdown.
    servers[vendor].wait_gone(*idents)


def test_executor_shutdown_without_wait(vendor: str, servers: Any) -> None:
    alias = ALIAS[vendor]
    release = threading.Event()
    executor = connguard.ThreadPoolExecutor(max_workers=1)
    executor.submit(release.wait, 10)
    future = executor.submit(thread_task, alias)
    executor.shutdown(wait=False)
    release.set()
    _, ident = future.result(timeout=10)
    servers[vendor].wait_gone(ident)


def test_executor_tasks_are_jobs(vendor: str, max_age: Any) -> None:
    alias = ALIAS[vendor]
    max_age(alias, 0)

    def task() -> bool:
        select_one(connections[alias])
        return connections[alias].connection is not None

    def closed() -> bool:
        return connections[alias].connection is None

    with connguard.ThreadPoolExecutor(max_workers=1) as executor:
        assert executor.submit(task).result() is True
        assert executor.submit(closed).result() is True
