"""Job boundaries: where a long-running process tidies its database connections.

Django tidies connections around HTTP requests only (``close_old_connections()``
on the request signals). A worker, a consumer loop or a thread pool has no
requests, so ``CONN_MAX_AGE`` is never applied, a connection left broken by an
error is reused, and the query log grows. ``job()`` marks the boundaries
instead, for every alias of the current thread::

    @connguard.job
    def handle(message): ...

    with connguard.job(): ...

    async with connguard.job(): ...

Unlike ``close_old_connections()``, it never touches a connection inside
``atomic()`` or another open transaction, so it is safe anywhere, and only the
outermost job of a thread runs it, so jobs nest.
"""

from __future__ import annotations

import functools
import inspect
import time
from _thread import get_ident
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from asgiref.sync import sync_to_async
from django.db.backends.signals import connection_created

from connguard import _jobstate, signals
from connguard._executor import ThreadPoolExecutor as ThreadPoolExecutor
from connguard._jobstate import (
    DEPTH,
    QUEUE_JOB,
    STATE,
    ContextJobs,
    ThreadJobs,
    claimed,
    note_event,
    note_wrapper,
    seeded_mine,
    set_context_state,
)
from connguard._tidy import CLOSED_AT_BOUNDARY as CLOSED_AT_BOUNDARY
from connguard._tidy import CLOSED_AT_BOUNDARY_PREFIX as CLOSED_AT_BOUNDARY_PREFIX
from connguard._tidy import boundary, tidy, tidy_all, tidy_here
from connguard._tidy import tidy_connections as tidy_connections

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = [
    "JobScope",
    "ThreadPoolExecutor",
    "as_jobs",
    "job",
    "job_finished",
    "job_started",
    "tidy_connections",
]

_T = TypeVar("_T")
_P = ParamSpec("_P")
_F = TypeVar("_F", bound=Callable[..., Any])


def _note_connection(sender: object, connection: BaseDatabaseWrapper, **kwargs: object) -> None:
    note_event()
    note_wrapper(connection)


connection_created.connect(_note_connection, dispatch_uid="connguard.jobs")
signals.connection_invalidated.connect(note_event, dispatch_uid="connguard.jobs")


# ##### Job boundaries #####


def _outside(state: int) -> bool:
    # No job() around and no queue job. Below 0 only if exits outnumbered
    # enters (a generator resumed elsewhere, say): then treated as outside.
    return state <= 0 and not state & QUEUE_JOB


def _async_outside(value: ThreadJobs | ContextJobs) -> bool:
    if isinstance(value, ContextJobs):
        if not _outside(value.state):
            return False
        base = value.base
    else:
        base = value
    # Not inside a sync job of this very thread, running this coroutine.
    return base is None or base.ident != get_ident() or not base.state


def job_started() -> None:
    """A task queue's job starts: tidy, unless already inside a job.

    For integrations whose hooks come in pairs (signals, middleware) rather
    than around a call; the ``connguard.contrib`` modules use it. Pair it with
    ``job_finished()`` in the same thread.
    """
    value = STATE.get()
    # Tidied outside any job(), whether or not a queue job is open: a queue
    # job that never finished must not stop this one from being tidied. Every
    # connection, as the job's end is not known to have been clean.
    if isinstance(value, ContextJobs) and value.state:
        # Inside an async job's context: the flag is the context's.
        if value.state >> 1 == 0:
            tidy_here()
        set_context_state(value.state | QUEUE_JOB, value.base)
        return
    jobs = claimed(value)
    if jobs.state >> 1 == 0:
        tidy_all(jobs)
    jobs.state |= QUEUE_JOB


def job_finished() -> None:
    """A task queue's job has ended: tidy, unless inside an enclosing ``job()``."""
    value = STATE.get()
    if isinstance(value, ContextJobs) and value.state:
        state = value.state & ~QUEUE_JOB
        set_context_state(state, value.base)
        if state >> 1 == 0:
            tidy_here()
        return
    jobs = claimed(value)
    jobs.state &= ~QUEUE_JOB
    if jobs.state >> 1 == 0:
        tidy_all(jobs)


_get_state = STATE.get


class JobScope:
    """What ``job()`` returns: a context manager (sync and async) and a decorator.

    It keeps no state of its own, so one scope serves any number of threads,
    tasks and nested blocks.
    """

    __slots__ = ()

    # The sync methods run twice per job, so boundary()'s quiet case is
    # inlined: a call costs more than the rest of it.

    def __enter__(self) -> None:
        jobs: Any = _get_state()  # Any: the ident test tells the two types apart
        if jobs.ident == get_ident():
            if jobs.state:
                jobs.state += 2  # DEPTH, as a constant
                return
            if jobs.quiet_at == _jobstate.epoch:
                wrapper = jobs.quiet
                if wrapper.errors_occurred or wrapper.queries_log:
                    tidy(wrapper, time.monotonic(), True)
            else:
                boundary(jobs)
            jobs.state = 2
            return
        _enter_elsewhere(jobs)

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        jobs: Any = _get_state()
        if jobs.ident == get_ident():
            if jobs.state != 2:
                _exit_nested(jobs, exc_type)
                return
            jobs.state = 0
            if jobs.quiet_at == _jobstate.epoch and exc_type is None:
                wrapper = jobs.quiet
                if wrapper.errors_occurred or wrapper.queries_log:
                    tidy(wrapper, time.monotonic(), True)
            else:
                boundary(jobs, exc_type)
            return
        _exit_elsewhere(jobs, exc_type)

    async def __aenter__(self) -> None:
        if _async_outside(STATE.get()):
            # The ORM runs async code's queries in the thread-sensitive sync
            # thread, so that is where the connections to tidy live.
            await sync_to_async(tidy_here, thread_sensitive=True)()
        value = STATE.get()
        if isinstance(value, ContextJobs):
            set_context_state(value.state + DEPTH, value.base)
        else:
            STATE.set(ContextJobs(DEPTH, value))

    async def __aexit__(self, exc_type: object, exc: object, traceback: object) -> None:
        value = STATE.get()
        if isinstance(value, ContextJobs):
            set_context_state(value.state - DEPTH, value.base)
        if _async_outside(STATE.get()):
            await sync_to_async(tidy_here, thread_sensitive=True)()

    def __call__(self, func: _F) -> _F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await func(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return run  # type: ignore[return-value]


def _enter_elsewhere(value: ThreadJobs | ContextJobs) -> None:
    """``__enter__`` when ``STATE`` does not hold this thread's state."""
    if isinstance(value, ContextJobs) and value.state:
        # Sync code inside an async job's context (sync_to_async): nested in it.
        if _outside(value.state):
            tidy_here()
        set_context_state(value.state + DEPTH, value.base)
        return
    jobs = claimed(value)
    if not jobs.state:
        boundary(jobs)
    jobs.state += DEPTH


def _exit_elsewhere(value: ThreadJobs | ContextJobs, exc_type: object) -> None:
    if isinstance(value, ContextJobs) and not 0 <= value.state < DEPTH:
        # Entered inside an async job's context.
        state = value.state - DEPTH
        set_context_state(state, value.base)
        if _outside(state):
            tidy_here()
        return
    # Entered with this thread's state, which the context holds no longer.
    _exit_nested(seeded_mine(), exc_type)


def _exit_nested(jobs: ThreadJobs, exc_type: object) -> None:
    """The exit of a job of this thread's sync code, in general."""
    state = jobs.state - DEPTH
    if state > 0:
        jobs.state = state  # still inside a job, or a queue job
        return
    jobs.state = 0
    boundary(jobs, exc_type)


@overload
def job() -> JobScope: ...
@overload
def job(func: _F) -> _F: ...
def job(func: Callable[..., Any] | None = None) -> Any:
    """Run a job: tidy this thread's connections before and after it.

    Use ``@job``, ``@job()``, ``with job():`` or ``async with job():``; a
    decorated ``async def`` tidies from the ORM's sync thread. With
    ``CONN_MAX_AGE = 0`` connections are closed when the job ends, as at the
    end of a request; above 0 or ``None``, a healthy connection stays open.
    """
    return _SCOPE if func is None else _SCOPE(func)


_SCOPE = JobScope()


def as_jobs(iterable: Iterable[_T]) -> Iterator[_T]:
    """Yield each item of ``iterable`` inside its own job.

    For hand-written consumer loops: ``for message in as_jobs(consumer):``.
    Waiting for the next item happens between jobs, and the job of an item
    ends when the loop asks for the next one, or leaves.
    """
    for item in iterable:
        with _SCOPE:
            yield item
