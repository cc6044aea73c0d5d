"""``JobScope``: what ``connguard.job()`` returns, and how a job's entry and exit
find this thread's or this context's state (``connguard._jobstate``) and tidy
(``connguard._tidy``) at the outermost boundary only."""

from __future__ import annotations

import functools
import inspect
import time
from _thread import get_ident
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async

from connguard import _jobstate
from connguard._jobstate import (
    DEPTH,
    QUEUE_JOB,
    STATE,
    ContextJobs,
    ThreadJobs,
    claimed,
    seeded_mine,
    set_context_state,
)
from connguard._tidy import boundary, tidy, tidy_here

_F = TypeVar("_F", bound=Callable[..., Any])


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
