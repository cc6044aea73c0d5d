"""connguard.job()'s state across threads, copied contexts and asyncio tasks, on the real servers.

A sync job's state is one object per thread, changed in place, which the
context variable also holds so that a boundary finds it in one read. Contexts
are copied into other threads and tasks, so these tests pin that a thread only
ever uses its own: many threads at once, a copied context in another thread,
the context of a thread that has ended. Async jobs keep an immutable state per
context. And the boundary's shortcut (nothing happened, nothing to tidy) must
still see a connection broken inside a job or between jobs.
"""

from __future__ import annotations

import asyncio
import contextvars
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import connections

import connguard
from connguard import _jobstate
from connguard.exceptions import OutcomeUnknown
from tests.helpers import ALIAS, kill_while_running, select_one, server_id

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

THREADS = 6
JOBS = 20
SLEEP = {"mysql": "DO SLEEP(5)", "postgresql": "DO $$ BEGIN PERFORM pg_sleep(5); END $$"}


def lose_a_running_statement(servers: Any, vendor: str, alias: str) -> None:
    """A write killed while it runs: OutcomeUnknown, and the connection left dead."""
    thread = kill_while_running(servers, vendor, connections[alias], SLEEP[vendor])
    try:
        with pytest.raises(OutcomeUnknown), connections[alias].cursor() as cursor:
            cursor.execute(SLEEP[vendor])
    finally:
        thread.join()


def boundary_closes(alias: str) -> dict[str, int]:
    return {
        key.removeprefix("closed_at_job_boundary_"): count
        for key, count in connguard.stats(alias).items()
        if key.startswith("closed_at_job_boundary_")
    }


def in_threads(count: int, func: Callable[[int], Any]) -> list[Any]:
    """``func(index)`` in ``count`` new threads at once; their results, or their first error."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = func(index)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


# ##### Threads #####


def test_threads_nest_their_own_jobs_at_once(vendor: str, max_age: Any) -> None:
    """Many threads enter and leave nested jobs at once: each sees only its own depth."""
    alias = ALIAS[vendor]
    max_age(alias, 0)

    def worker(index: int) -> list[tuple[bool, bool]]:
        seen = []
        for _ in range(JOBS):
            with connguard.job():
                with connguard.job():
                    select_one(connections[alias])
                kept = connections[alias].connection is not None  # inner end: nested
            seen.append((kept, connections[alias].connection is None))  # outer end: closed
        return seen

    results = in_threads(THREADS, worker)
    assert results == [[(True, True)] * JOBS] * THREADS
    assert connguard.stats(alias)["connections_opened"] == THREADS * JOBS
    assert boundary_closes(alias) == {"max_age": THREADS * JOBS}


def test_threads_keep_healthy_connections_at_once(vendor: str, max_age: Any) -> None:
    """The shortcut for a thread whose one connection has nothing to do, in many threads."""
    alias = ALIAS[vendor]
    max_age(alias, None)

    def worker(index: int) -> set[int]:
        ids = set()
        for _ in range(JOBS):
            with connguard.job():
                select_one(connections[alias])
                ids.add(server_id(connections[alias]))
        return ids

    results = in_threads(THREADS, worker)
    assert all(len(ids) == 1 for ids in results)
    assert len(set.union(*results)) == THREADS
    assert connguard.stats(alias)["connections_opened"] == THREADS
    assert boundary_closes(alias) == {}


def test_a_context_copied_into_another_thread_leaves_this_thread_alone(
    vendor: str, max_age: Any
) -> None:
    """The copy holds this thread's state: the other thread must use its own."""
    alias = ALIAS[vendor]
    max_age(alias, 0)

    def there() -> tuple[bool, bool]:
        with connguard.job():
            select_one(connections[alias])
            inside = connections[alias].connection is not None
        return inside, connections[alias].connection is None

    with connguard.job():
        select_one(connections[alias])
        mine = server_id(connections[alias])
        copied = contextvars.copy_context()
        # That thread's own job, outermost there: its connection closes at its end.
        assert in_threads(1, lambda index: copied.run(there)) == [(True, True)]
        with connguard.job():  # still nested in ours: our state was not touched
            pass
        assert server_id(connections[alias]) == mine
    assert connections[alias].connection is None
    assert boundary_closes(alias) == {"max_age": 2}


def test_the_context_of_an_ended_thread_names_no_thread(vendor: str, max_age: Any) -> None:
    """A thread id can be reused once the thread has ended; its state must not be."""
    alias = ALIAS[vendor]
    max_age(alias, 0)

    def first(index: int) -> contextvars.Context:
        with connguard.job():
            select_one(connections[alias])
        return contextvars.copy_context()

    (left,) = in_threads(1, first)
    state = left[_jobstate.STATE]
    assert isinstance(state, _jobstate.ThreadJobs)
    assert state.ident == 0

    def second() -> bool:
        with connguard.job():
            select_one(connections[alias])
        return connections[alias].connection is None

    assert in_threads(1, lambda index: left.run(second)) == [True]
    assert boundary_closes(alias) == {"max_age": 2}


# ##### Async code #####


def test_async_to_sync_inside_a_job_leaves_its_connections_alone(vendor: str, max_age: Any) -> None:
    """An async job inside a sync one is nested in it, though it runs on another thread."""
    alias = ALIAS[vendor]
    max_age(alias, 0)

    async def steps() -> int:
        async with connguard.job():
            return await sync_to_async(server_id_of)(alias)

    with connguard.job():
        before = server_id_of(alias)
        assert async_to_sync(steps)() == before  # run in this thread, in our job
        assert server_id(connections[alias]) == before
    assert connections[alias].connection is None
    assert boundary_closes(alias) == {"max_age": 1}


def server_id_of(alias: str) -> int:
    select_one(connections[alias])
    return server_id(connections[alias])


def test_sync_jobs_inside_an_async_job_are_nested(vendor: str, max_age: Any) -> None:
    alias = ALIAS[vendor]
    max_age(alias, 0)

    def inner() -> bool:
        with connguard.job():
            select_one(connections[alias])
        return connections[alias].connection is not None

    def closed() -> bool:
        return connections[alias].connection is None

    async def main() -> list[bool]:
        async with connguard.job():
            kept = [await sync_to_async(inner)(), await sync_to_async(inner)()]
        return [*kept, await sync_to_async(closed)()]

    assert asyncio.run(main()) == [True, True, True]


def test_tasks_keep_the_job_they_started_in(vendor: str, max_age: Any) -> None:
    """A task created inside an async job is inside it; one created outside is not."""
    alias = ALIAS[vendor]
    max_age(alias, 0)

    def use() -> None:
        select_one(connections[alias])

    def open_() -> bool:
        return connections[alias].connection is not None

    async def task_job() -> bool:
        async with connguard.job():
            await sync_to_async(use)()
        return await sync_to_async(open_)()

    async def main() -> tuple[bool, bool]:
        async with connguard.job():
            inside = await asyncio.create_task(task_job())
        outside = await asyncio.create_task(task_job())
        return inside, outside

    assert asyncio.run(main()) == (True, False)


def test_async_jobs_in_two_tasks_do_not_see_each_other(vendor: str, max_age: Any) -> None:
    alias = ALIAS[vendor]
    max_age(alias, 0)
    results: list[bool] = []

    def use() -> None:
        select_one(connections[alias])

    def closed() -> bool:
        return connections[alias].connection is None

    async def long_job(started: asyncio.Event, done: asyncio.Event) -> None:
        async with connguard.job():
            started.set()
            await done.wait()

    async def short_job() -> None:
        async with connguard.job():
            await sync_to_async(use)()
        results.append(await sync_to_async(closed)())

    async def main() -> None:
        started, done = asyncio.Event(), asyncio.Event()
        waiting = asyncio.create_task(long_job(started, done))
        await started.wait()
        await asyncio.create_task(short_job())  # its own job, not nested in the other
        done.set()
        await waiting

    asyncio.run(main())
    assert results == [True]


# ##### The shortcut still sees a broken connection #####


def test_a_lost_connection_caught_inside_a_job_is_closed_at_its_end(
    vendor: str, servers: Any
) -> None:
    alias = ALIAS[vendor]

    def task(index: int) -> bool:  # a thread with one connection: the shortcut applies
        for _ in range(2):
            with connguard.job():
                select_one(connections[alias])
        with connguard.job():
            lose_a_running_statement(servers, vendor, alias)
        return connections[alias].connection is None

    assert in_threads(1, task) == [True]
    assert boundary_closes(alias) == {"error": 1}


def test_a_connection_broken_between_jobs_is_closed_at_the_next(vendor: str, servers: Any) -> None:
    alias = ALIAS[vendor]

    def task(index: int) -> tuple[bool, int]:
        for _ in range(2):
            with connguard.job():
                select_one(connections[alias])
        # Outside any job: lost while running, so not retried (not read-only).
        lose_a_running_statement(servers, vendor, alias)
        with connguard.job():
            closed = connections[alias].connection is None
            return closed, select_one(connections[alias])

    assert in_threads(1, task) == [(True, 1)]
    assert boundary_closes(alias) == {"error": 1}


class TimeLimitExceeded(Exception):
    """Raised by a signal handler in a driver call, as Celery's soft time limit is."""


def test_an_interruption_caught_inside_a_job_is_closed_at_its_end(vendor: str) -> None:
    """The guard marks the connection dead and says so; Django sees no error."""
    if vendor == "postgresql" and settings.PG_DRIVER == "psycopg2":
        pytest.skip("psycopg2 finishes the statement before the handler runs")
    alias = ALIAS[vendor]
    sleep = {"mysql": "SELECT SLEEP(1)", "postgresql": "SELECT pg_sleep(1)"}[vendor]

    def handler(signum: int, frame: Any) -> None:
        raise TimeLimitExceeded

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        with connguard.job():
            select_one(connections[alias])
        with connguard.job():
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            with pytest.raises(TimeLimitExceeded), connections[alias].cursor() as cursor:
                cursor.execute(sleep)
                cursor.fetchall()
            assert connections[alias].errors_occurred is False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert connections[alias].connection is None
    assert boundary_closes(alias) == {"error": 1}
