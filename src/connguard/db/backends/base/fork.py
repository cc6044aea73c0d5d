"""Fork safety, installed when a guarded backend is imported, with no user action.

After ``fork()`` the child shares the parent's database sockets. If the child
uses one, the two processes interleave on one protocol stream (and corrupt a
TLS stream for good); if the child closes one, or its driver object is garbage
collected, the driver sends COM_QUIT / Terminate and ends the *parent's*
session. So in the child, before any user code runs, every inherited socket is
pointed at /dev/null with ``dup2()``: the child's reference to the shared socket
is gone without a byte sent, and anything the driver writes later (a quit
message from a finalizer, a TLS close_notify) goes nowhere. The driver objects
themselves are kept alive and never closed, since another thread of the parent
may have held their locks at the moment of the fork.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from connguard._events import Event, Reason, emit

# The guarded wrappers of this process (GuardedWrapperMixin).
_wrappers: weakref.WeakSet[Any] = weakref.WeakSet()
# Inherited driver objects (connections, pools): referenced forever in the
# child so that no finalizer runs on them while the child lives.
_orphans: list[Any] = []


def track(wrapper: Any) -> None:
    _wrappers.add(wrapper)


def detach_socket(fd: int | None) -> None:
    """Make ``fd`` refer to /dev/null instead of the socket shared with the parent."""
    if fd is None or fd < 0:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass  # already closed: nothing shared any more
    finally:
        os.close(devnull)


def after_fork(wrapper: Any) -> None:
    """In a forked child: drop the wrapper's inherited connection without any I/O."""
    raw, wrapper.connection = wrapper.connection, None
    driver, state = wrapper._connguard_driver, wrapper._connguard
    if raw is not None:
        try:
            fd = driver.fileno(raw)
        except Exception:
            fd = None
        detach_socket(fd)
        _orphans.append(raw)
        emit(Event.FORKED, wrapper, Reason.FORK)
    if wrapper.in_atomic_block:
        # As Django's close() does inside atomic(): the block must fail.
        wrapper.closed_in_transaction = wrapper.needs_rollback = True
    state.poll = None
    state.dead = False
    pools = getattr(type(wrapper), "_connection_pools", None)
    pool = pools.pop(wrapper.alias, None) if pools else None
    if pool is not None:
        for pooled in list(getattr(pool, "_pool", ())):
            try:
                detach_socket(driver.fileno(pooled))
            except Exception:
                pass
        _orphans.append(pool)


def _after_fork_in_child() -> None:
    for wrapper in list(_wrappers):
        wrapper._connguard_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
