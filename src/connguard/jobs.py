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

import contextlib
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connections
from django.db.backends.signals import connection_created

from connguard import _stats as stats

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

logger = logging.getLogger("connguard.jobs")

# Counters in connguard.stats(alias): connections closed at a job boundary.
CLOSED_AT_BOUNDARY = "closed_at_job_boundary"
CLOSED_AT_BOUNDARY_PREFIX = "closed_at_job_boundary_"

_T = TypeVar("_T")
_P = ParamSpec("_P")
_F = TypeVar("_F", bound=Callable[..., Any])

# How many job() blocks enclose the running code. Context variables, not
# thread-locals, so that async jobs in one thread do not see each other.
_depth: ContextVar[int] = ContextVar("connguard_job_depth", default=0)
# Set between a task queue's job_started() and job_finished(). A flag, not a
# counter: a queue that loses an "end" hook (a killed task, a cancelled
# message) must not leave the thread believing it is inside a job forever.
_in_queue_job: ContextVar[bool] = ContextVar("connguard_in_queue_job", default=False)


def _in_job() -> bool:
    return _depth.get() > 0 or _in_queue_job.get()


# ##### This thread's connections #####


class _ThreadConnections(threading.local):
    """The wrappers that have opened a connection in this thread, by alias.

    ``connections.all(initialized_only=True)`` asks asgiref's ``Local`` twice
    per alias, and each asks for a running event loop, which raises in a sync
    thread: a few microseconds per job boundary, on every job. Connections are
    opened far less often than jobs run, so keep the list up to date on
    ``connection_created`` instead. A wrapper that never connected has nothing
    to tidy.
    """

    def __init__(self) -> None:
        self.wrappers: dict[str, BaseDatabaseWrapper] = {}
        # Whether this thread's connections from before connguard.jobs was
        # imported (so before the receiver below) have been looked up.
        self.seeded = False


_thread = _ThreadConnections()


def _note_connection(sender: object, connection: BaseDatabaseWrapper, **kwargs: object) -> None:
    # Only this thread's own wrapper for the alias: a wrapper shared from
    # another thread (allow_thread_sharing) is that thread's to tidy.
    if any(wrapper is connection for wrapper in connections.all(initialized_only=True)):
        _thread.wrappers[connection.alias] = connection


connection_created.connect(_note_connection, dispatch_uid="connguard.jobs")


def _thread_wrappers() -> list[BaseDatabaseWrapper]:
    """This thread's wrappers that have had a connection."""
    state = _thread
    if not state.seeded:
        state.seeded = True
        for wrapper in connections.all(initialized_only=True):
            if wrapper.connection is not None:
                state.wrappers[wrapper.alias] = wrapper
    return list(state.wrappers.values())


# ##### The hygiene #####


def tidy_connections(using: str | None = None, *, job_boundary: bool = True) -> None:
    """Tidy this thread's connections (one alias with ``using``) now.

    For each connection outside a transaction: reset the query log, re-arm
    ``CONN_HEALTH_CHECKS``, close it if it had errors and fails validation,
    and close it if it outlived ``CONN_MAX_AGE``. ``job_boundary=False`` is for
    tidying between uses that are not job boundaries (a broker's poll, say):
    then ``CONN_MAX_AGE = 0`` does not close, or every poll would reconnect.

    A connection inside ``atomic()`` or a manual transaction is never touched.
    """
    wrappers = [connections[using]] if using is not None else _thread_wrappers()
    now = time.monotonic()
    for wrapper in wrappers:
        try:
            _tidy(wrapper, now, job_boundary=job_boundary)
        except Exception:
            # Tidying is a courtesy to the job; it must never be what fails it.
            logger.warning(
                "connguard could not tidy connection %r",
                wrapper.alias,
                exc_info=True,
                extra={"alias": wrapper.alias},
            )


def _tidy(wrapper: BaseDatabaseWrapper, now: float, *, job_boundary: bool) -> None:
    if wrapper.connection is None:
        wrapper.queries_log.clear()
        return
    if wrapper.in_atomic_block or wrapper.autocommit != wrapper.settings_dict["AUTOCOMMIT"]:
        # Someone's transaction: closing here would silently lose its work,
        # which is what close_old_connections() does inside atomic().
        return
    wrapper.queries_log.clear()
    # Django re-arms CONN_HEALTH_CHECKS only in close_if_unusable_or_obsolete(),
    # at request boundaries; a job boundary is the same thing. (The guarded
    # backends validate before every use anyway.)
    wrapper.health_check_done = False  # type: ignore[attr-defined]  # not in django-stubs
    reason: str | None = None
    if getattr(wrapper, "_connguard_dead", False):
        reason = "error"  # a disconnect: no need to ask the server
    elif wrapper.errors_occurred:
        if wrapper.is_usable():
            wrapper.errors_occurred = False
        else:
            reason = "unusable"
    if reason is None and wrapper.close_at is not None and now >= wrapper.close_at:
        if job_boundary or wrapper.settings_dict["CONN_MAX_AGE"]:
            reason = "max_age"
    if reason is not None:
        _close(wrapper, reason)


def _close(wrapper: BaseDatabaseWrapper, reason: str) -> None:
    stats.record(wrapper.alias, CLOSED_AT_BOUNDARY, CLOSED_AT_BOUNDARY_PREFIX + reason)
    # CONN_MAX_AGE = 0 closes at the end of every job, which is routine.
    level = logging.DEBUG if reason == "max_age" else logging.INFO
    if logger.isEnabledFor(level):
        logger.log(
            level,
            "connguard closed connection %r at a job boundary (%s)",
            wrapper.alias,
            reason,
            extra={"alias": wrapper.alias, "reason": reason},
        )
    with contextlib.suppress(DatabaseError):
        # Closing a broken connection may fail; Django forgets it either way.
        wrapper.close()


# ##### Job boundaries #####


def job_started() -> None:
    """A task queue's job starts: tidy, unless already inside a job.

    For integrations whose hooks come in pairs (signals, middleware) rather
    than around a call; the ``connguard.contrib`` modules use it. Pair it with
    ``job_finished()`` in the same thread.
    """
    # Not _in_job(): a queue job that never finished must not stop this one
    # from being tidied.
    if _depth.get() == 0:
        tidy_connections()
    _in_queue_job.set(True)


def job_finished() -> None:
    """A task queue's job has ended: tidy, unless inside an enclosing ``job()``."""
    _in_queue_job.set(False)
    if _depth.get() == 0:
        tidy_connections()


class JobScope:
    """What ``job()`` returns: a context manager (sync and async) and a decorator."""

    __slots__ = ()

    def __enter__(self) -> None:
        if not _in_job():
            tidy_connections()
        _depth.set(_depth.get() + 1)

    def __exit__(self, *exc_info: object) -> None:
        _depth.set(_depth.get() - 1)
        if not _in_job():
            tidy_connections()

    async def __aenter__(self) -> None:
        if not _in_job():
            # The ORM runs async code's queries in the thread-sensitive sync
            # thread, so that is where the connections to tidy live.
            await sync_to_async(tidy_connections, thread_sensitive=True)()
        _depth.set(_depth.get() + 1)

    async def __aexit__(self, *exc_info: object) -> None:
        _depth.set(_depth.get() - 1)
        if not _in_job():
            await sync_to_async(tidy_connections, thread_sensitive=True)()

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
    scope = JobScope()
    return scope if func is None else scope(func)


def as_jobs(iterable: Iterable[_T]) -> Iterator[_T]:
    """Yield each item of ``iterable`` inside its own job.

    For hand-written consumer loops: ``for message in as_jobs(consumer):``.
    Waiting for the next item happens between jobs, and the job of an item
    ends when the loop asks for the next one, or leaves.
    """
    for item in iterable:
        with JobScope():
            yield item


# ##### Thread pools #####


class ThreadPoolExecutor(futures.ThreadPoolExecutor):
    """``concurrent.futures.ThreadPoolExecutor`` whose tasks run as jobs.

    Each submitted callable (``submit()``, ``map()``) runs inside ``job()``
    in its worker thread, and ``shutdown()`` closes the connections that the
    worker threads left open, once those threads have finished.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connguard_lock = threading.Lock()
        # The wrappers the worker threads used: Django's connections are
        # thread-local, so they can only be found from inside those threads.
        self._connguard_wrappers: dict[int, BaseDatabaseWrapper] = {}

    def submit(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> futures.Future[_T]:
        return super().submit(self._connguard_run, fn, args, kwargs)

    def _connguard_run(
        self, fn: Callable[..., _T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> _T:
        try:
            with JobScope():
                return fn(*args, **kwargs)
        finally:
            used = _thread_wrappers()
            with self._connguard_lock:
                for wrapper in used:
                    self._connguard_wrappers[id(wrapper)] = wrapper

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:
            self._connguard_close()
        else:
            # Not a daemon: the interpreter waits for it at exit, as it waits
            # for the worker threads themselves.
            threading.Thread(
                target=self._connguard_close_when_done, name="connguard-executor-shutdown"
            ).start()

    def _connguard_close_when_done(self) -> None:
        super().shutdown(wait=True)
        self._connguard_close()

    def _connguard_close(self) -> None:
        with self._connguard_lock:
            wrappers, self._connguard_wrappers = list(self._connguard_wrappers.values()), {}
        for wrapper in wrappers:
            # The owning threads have exited, so nothing else can use these.
            wrapper.inc_thread_sharing()
            try:
                with contextlib.suppress(DatabaseError):
                    wrapper.close()
            finally:
                wrapper.dec_thread_sharing()
