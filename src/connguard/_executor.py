"""``connguard.jobs.ThreadPoolExecutor``: a thread pool whose tasks run as jobs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent import futures
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from django.db import DatabaseError

from connguard._jobstate import mine, seeded
from connguard._scope import JobScope

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

_T = TypeVar("_T")
_P = ParamSpec("_P")


class ThreadPoolExecutor(futures.ThreadPoolExecutor):
    """``concurrent.futures.ThreadPoolExecutor`` whose tasks run as jobs.

    Each submitted callable (``submit()``, ``map()``) runs inside ``job()``
    in its worker thread, and ``shutdown()`` closes the connections that the
    worker threads left open, once those threads have finished.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connguard_scope = JobScope()
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
            with self._connguard_scope:
                return fn(*args, **kwargs)
        finally:
            used = seeded(mine())
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
