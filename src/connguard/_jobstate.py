"""Where the running code is, for ``connguard.jobs``: inside a job or not.

A job state is an int: the ``job()`` blocks around the code, times 2, plus 1
between a task queue's ``job_started()`` and ``job_finished()`` (a flag, not a
counter: a queue that loses an "end" hook, say a killed task, must not leave
the thread in a job forever). Only a boundary at state 0 tidies.

Sync code keeps its state per thread, in a ``ThreadJobs``: the connections are
the thread's, whichever context the code runs in, and an attribute is far
cheaper to update than a context variable (a ``ContextVar.set()`` costs about
as much as the rest of a job boundary). It is only ever read or changed by its
own thread, so it needs no lock.

Async code keeps its state per context, in an immutable ``ContextJobs``, so
that async jobs sharing a thread do not see each other, and sync code called
from an async job (``sync_to_async`` copies the context) knows it is inside
one. Being immutable, a copy of it in another task or thread is that copy's.

Outside async jobs, ``STATE`` holds the thread's ``ThreadJobs``, so that a
boundary finds it with one context-variable read. Contexts are copied into
other threads (``sync_to_async``, ``asyncio.to_thread``) and asgiref copies
changed context variables back to the caller, so the one found may be another
thread's: every use checks ``ident`` first, and uses it only in that thread.
"""

from __future__ import annotations

import os
import threading
import weakref
from _thread import get_ident
from contextvars import ContextVar
from typing import TYPE_CHECKING

from django.db import connections

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

QUEUE_JOB = 1
DEPTH = 2

# Most boundaries find nothing to do: no error, no query log, no CONN_MAX_AGE
# deadline, no health check to re-arm. A boundary reads the first two from
# Django's state. The rest changes only at events, each of which moves epoch:
# a connection opened (its health check is done, its deadline new), or one the
# guard found broken (it says so with connection_invalidated, and
# connguard_close_reason() then says what to do). A thread whose epoch is
# behind tidies every connection, as does one with more than one connection,
# a deadline or health checks (a clock read, and the guard asked, each time).
epoch = 0
_epoch_lock = threading.Lock()


def note_event(**kwargs: object) -> None:
    global epoch
    with _epoch_lock:  # events are rare; no two may share a value
        epoch += 1


class ThreadJobs:
    """One thread's job state for sync code, and the wrappers that connected in it."""

    __slots__ = (
        "__weakref__",
        "by_alias",
        "epoch",
        "ident",
        "quiet",
        "quiet_at",
        "seeded",
        "state",
        "wrappers",
    )

    def __init__(self) -> None:
        self.ident = get_ident()  # 0 once the thread has ended
        self.state = 0
        # The epoch when this thread last tidied every connection and left
        # none in a transaction; -1: tidy every connection next time.
        self.epoch = -1
        self.by_alias: dict[str, BaseDatabaseWrapper] = {}
        # by_alias's values, rebuilt when it changes, not at every boundary.
        self.wrappers: tuple[BaseDatabaseWrapper, ...] = ()
        # The thread's one wrapper, when it has no CONN_MAX_AGE deadline and no
        # health checks, so that only an error or a query log can be due; it
        # is that while the epoch is quiet_at (-1: not quiet).
        self.quiet: BaseDatabaseWrapper | None = None
        self.quiet_at = -1
        # Whether the connections opened before connguard.jobs was imported
        # (so before its connection_created receiver) have been looked up.
        self.seeded = False


class ContextJobs:
    """Async code's job state, per context: replaced, never changed."""

    __slots__ = ("base", "state")
    ident = 0  # no thread's: JobScope's test for this thread's ThreadJobs fails at once

    def __init__(self, state: int, base: ThreadJobs | None) -> None:
        self.state = state
        # What STATE held before the first async job, put back at state 0: so
        # that asgiref never finds a change of ours to copy back into a sync
        # job's context.
        self.base = base


NO_JOBS = ContextJobs(0, None)
STATE: ContextVar[ThreadJobs | ContextJobs] = ContextVar("connguard_job", default=NO_JOBS)


def set_context_state(state: int, base: ThreadJobs | None) -> None:
    STATE.set(ContextJobs(state, base) if state else base or NO_JOBS)


class _Owner:
    """Held in the thread's locals only, so dropped when the thread ends.

    Its ``ThreadJobs`` may outlive the thread in copied contexts; from then on
    it names no thread, and a new thread that reuses the id cannot take it for
    its own.
    """

    __slots__ = ("jobs",)

    def __init__(self, jobs: ThreadJobs) -> None:
        self.jobs = jobs

    def __del__(self) -> None:
        self.jobs.ident = 0


class _Local(threading.local):
    owner: _Owner | None = None


_local = _Local()
_every: weakref.WeakSet[ThreadJobs] = weakref.WeakSet()


def mine() -> ThreadJobs:
    """This thread's state (a thread-local lookup: for the slow paths)."""
    owner = _local.owner
    if owner is None:
        jobs = ThreadJobs()
        _every.add(jobs)
        owner = _local.owner = _Owner(jobs)
    return owner.jobs


def _after_fork_in_child() -> None:
    # Only the forking thread lives on in the child; the others' ids may be
    # reused there by new threads.
    current = _local.owner
    for jobs in list(_every):
        if current is None or jobs is not current.jobs:
            jobs.ident = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def seeded(jobs: ThreadJobs) -> tuple[BaseDatabaseWrapper, ...]:
    """``jobs.wrappers``, with the connections from before the receiver looked up once.

    ``connections.all(initialized_only=True)`` asks asgiref's ``Local`` twice
    per alias, and each asks for a running event loop: a few microseconds, too
    much for every boundary. Connections are opened far less often than jobs
    run, so the list is kept up to date on ``connection_created`` instead.
    """
    if not jobs.seeded:
        jobs.seeded = True
        for wrapper in connections.all(initialized_only=True):
            if wrapper.connection is not None:
                jobs.by_alias[wrapper.alias] = wrapper
        jobs.wrappers = tuple(jobs.by_alias.values())
    return jobs.wrappers


def seeded_mine() -> ThreadJobs:
    jobs = mine()
    seeded(jobs)
    return jobs


def claimed(value: ThreadJobs | ContextJobs) -> ThreadJobs:
    """This thread's state, given ``STATE`` outside async jobs; put there if empty.

    Not over another live thread's, copied into this context: it would only
    bounce between the threads.
    """
    if value.ident == get_ident():
        return value  # type: ignore[return-value]  # only a ThreadJobs has an ident
    jobs = seeded_mine()
    if value is NO_JOBS or not value.ident:  # empty, or an ended thread's
        STATE.set(jobs)
    return jobs


def note_wrapper(connection: BaseDatabaseWrapper) -> None:
    """A connection was opened in this thread: keep its wrapper, if it is this thread's."""
    jobs = mine()
    if jobs.by_alias.get(connection.alias) is connection:
        return  # reconnected (CONN_MAX_AGE = 0 does at every job): known already
    # Only this thread's own wrapper for the alias: a wrapper shared from
    # another thread (allow_thread_sharing) is that thread's to tidy.
    if any(wrapper is connection for wrapper in connections.all(initialized_only=True)):
        jobs.by_alias[connection.alias] = connection
        if jobs.seeded:
            jobs.wrappers = tuple(jobs.by_alias.values())
            jobs.quiet_at = -1
