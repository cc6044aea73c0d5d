"""What a job boundary does to this thread's connections; ``connguard.jobs`` says when.

The decision to close a guarded connection is the guard's
(``connguard_close_reason()``): it knows whether the connection is dead. A
stock wrapper has no guard, so its decision is made here, from Django's state.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

from django.db import DatabaseError, connections

from connguard import _jobstate
from connguard._events import Event, Reason, emit
from connguard.db.backends.base.decisions import at_boundary

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("connguard.jobs")


def tidy(wrapper: BaseDatabaseWrapper, now: float, job_boundary: bool) -> bool:
    """Tidy one connection; False if it was left alone (a transaction) or tidying failed."""
    try:
        if wrapper.connection is None:
            wrapper.queries_log.clear()
            return True
        if wrapper.in_atomic_block or wrapper.autocommit != wrapper.settings_dict["AUTOCOMMIT"]:
            # Someone's transaction: closing here would silently lose its work,
            # which is what close_old_connections() does inside atomic().
            return False
        wrapper.queries_log.clear()
        # Django re-arms CONN_HEALTH_CHECKS only in close_if_unusable_or_obsolete(),
        # at request boundaries; a job boundary is the same thing. (The guarded
        # backends validate before every use anyway.)
        wrapper.health_check_done = False  # type: ignore[attr-defined]  # not in django-stubs
        ask = getattr(wrapper, "connguard_close_reason", None)
        if ask is not None:
            reason = ask(now, job_boundary=job_boundary)
        else:
            reason = stock_close_reason(wrapper, now, job_boundary)
        if reason is not None:
            close(wrapper, reason)
        return True
    except Exception:
        # Tidying is a courtesy to the job; it must never be what fails it.
        logger.warning(
            "connguard could not tidy connection %r",
            wrapper.alias,
            exc_info=True,
            extra={"alias": wrapper.alias},
        )
        return False


def stock_close_reason(
    wrapper: BaseDatabaseWrapper, now: float, job_boundary: bool
) -> Reason | None:
    """What the guard's ``connguard_close_reason()`` decides, for a stock backend."""
    max_age_closes = job_boundary or bool(wrapper.settings_dict["CONN_MAX_AGE"])
    reason, cleared = at_boundary(
        False, wrapper.errors_occurred, wrapper.is_usable, wrapper.close_at, now, max_age_closes
    )
    if cleared:
        wrapper.errors_occurred = False
    return reason


def close(wrapper: BaseDatabaseWrapper, reason: Reason) -> None:
    # CONN_MAX_AGE = 0 closes at the end of every job, which is routine.
    level = logging.DEBUG if reason is Reason.MAX_AGE else logging.INFO
    emit(Event.CLOSED_AT_BOUNDARY, wrapper, reason, level=level)
    with contextlib.suppress(DatabaseError):
        # Closing a broken connection may fail; Django forgets it either way.
        wrapper.close()


# ##### At a boundary #####


def tidy_connections(using: str | None = None, *, job_boundary: bool = True) -> None:
    """Tidy this thread's connections (one alias with ``using``) now.

    For each connection outside a transaction: reset the query log, re-arm
    ``CONN_HEALTH_CHECKS``, close it if it had errors and fails validation,
    and close it if it outlived ``CONN_MAX_AGE``. ``job_boundary=False`` is for
    tidying between uses that are not job boundaries (a broker's poll, say):
    then ``CONN_MAX_AGE = 0`` does not close, or every poll would reconnect.

    A connection inside ``atomic()`` or a manual transaction is never touched.
    """
    wrappers = (connections[using],) if using is not None else _jobstate.seeded(_jobstate.mine())
    now = time.monotonic()
    for wrapper in wrappers:
        tidy(wrapper, now, job_boundary)


def tidy_all(jobs: _jobstate.ThreadJobs) -> None:
    epoch = _jobstate.epoch  # read first, so that an event during the tidy is not missed
    now = time.monotonic()
    settled = True
    wrappers = _jobstate.seeded(jobs)
    for wrapper in wrappers:
        # Unsettled: left in a transaction (tidied next time), or health
        # checks, which every boundary re-arms.
        if not tidy(wrapper, now, True) or wrapper.health_check_enabled:  # type: ignore[attr-defined]
            settled = False
    jobs.epoch = epoch if settled else -1
    quiet = settled and len(wrappers) == 1 and wrappers[0].close_at is None
    jobs.quiet = wrappers[0] if quiet else None
    jobs.quiet_at = epoch if quiet else -1


def boundary(jobs: _jobstate.ThreadJobs, exc_type: object = None) -> None:
    """A boundary of this thread's sync jobs; JobScope inlines the quiet one."""
    if jobs.epoch != _jobstate.epoch or exc_type is not None:
        # An exception out of the job may have come from inside the guard.
        tidy_all(jobs)
        return
    for wrapper in jobs.wrappers:
        if wrapper.errors_occurred or wrapper.queries_log or wrapper.close_at is not None:
            tidy(wrapper, time.monotonic(), True)


def tidy_here() -> None:
    """An async job's boundary, in the ORM's sync thread, whose connections these are."""
    jobs = _jobstate.seeded_mine()
    if not jobs.state:  # not while that thread's sync code is inside a job: they are in use
        tidy_all(jobs)
