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

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from django.db.backends.signals import connection_created

from connguard import signals
from connguard._executor import ThreadPoolExecutor as ThreadPoolExecutor
from connguard._jobstate import (
    QUEUE_JOB,
    STATE,
    ContextJobs,
    claimed,
    note_event,
    note_wrapper,
    set_context_state,
)
from connguard._scope import JobScope as JobScope
from connguard._tidy import tidy_all, tidy_here
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
