"""Helpers for tests against the real servers: build wrappers, kill, expire."""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import load_backend

VENDORS = ("mysql", "postgresql")
GUARDED = {"mysql": "connguard.db.backends.mysql", "postgresql": "connguard.db.backends.postgresql"}
STOCK = {"mysql": "django.db.backends.mysql", "postgresql": "django.db.backends.postgresql"}
ALIAS = {"mysql": "default", "postgresql": "postgresql"}
STOCK_ALIAS = {"mysql": "mysql_stock", "postgresql": "postgresql_stock"}

_made: list[BaseDatabaseWrapper] = []


def make_wrapper(
    vendor: str, *, guarded: bool = True, alias: str | None = None, **overrides: Any
) -> Any:
    """A standalone wrapper on the vendor's server, like connections[alias] but private."""
    base = dict(connections[ALIAS[vendor]].settings_dict)
    base.pop("TEST", None)
    base["ENGINE"] = (GUARDED if guarded else STOCK)[vendor]
    base["OPTIONS"] = dict(base.get("OPTIONS") or {})
    if "OPTIONS" in overrides:
        base["OPTIONS"].update(overrides.pop("OPTIONS"))
    base.update(overrides)
    name = alias or f"{vendor}_{'guarded' if guarded else 'stock'}"
    settings_dict = connections.configure_settings({"default": base})["default"]
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, name)
    _made.append(wrapper)
    return wrapper


def close_all() -> None:
    for wrapper in [*_made, *connections.all(initialized_only=True)]:
        with contextlib.suppress(Exception):
            wrapper.close()
    _made.clear()


def server_id(wrapper: Any) -> int:
    """The server-side id of the wrapper's current connection, without a round trip."""
    raw = wrapper.connection
    if wrapper.vendor == "mysql":
        return int(raw.thread_id())
    info = getattr(raw, "info", None)
    return int(info.backend_pid) if info is not None else int(raw.get_backend_pid())


def fileno(wrapper: Any) -> int:
    raw = wrapper.connection
    sock = getattr(raw, "_sock", None)  # PyMySQL
    return int(sock.fileno()) if sock is not None else int(raw.fileno())


def wait_closed_by_server(fd: int, timeout: float = 10.0) -> None:
    """Wait until the server's FIN reaches our socket.

    PostgreSQL writes its FATAL message before it closes; waiting for the
    hang-up itself, not just for readable data, makes the tests deterministic.
    """
    poller = select.poll()
    hangup = select.POLLRDHUP | select.POLLHUP
    poller.register(fd, hangup)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = poller.poll(50)
        if events and events[0][1] & hangup:
            return
    raise AssertionError(f"the server did not close the connection within {timeout}s")


def kill(servers: dict[str, Any], vendor: str, wrapper: Any) -> None:
    """End the wrapper's connection from the server side, and wait until it shows:
    the server no longer lists the session, and its close has reached our socket."""
    fd, ident = fileno(wrapper), server_id(wrapper)
    servers[vendor].kill(ident)
    wait_closed_by_server(fd)


class Killer(threading.Thread):
    """The thread of ``kill_while_running``; ``join()`` raises what it raised."""

    def __init__(self, server: Any, ident: int, statement: str, before_kill: Any) -> None:
        super().__init__(name=f"killer-{ident}")
        self.server, self.session, self.statement = server, ident, statement
        self.before_kill = before_kill
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.server.wait_running(self.session, self.statement)
            if self.before_kill is not None:
                self.before_kill()
            self.server.kill(self.session)
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise AssertionError(f"the killer of session {self.session} failed") from self.error


def kill_while_running(
    servers: dict[str, Any],
    vendor: str,
    wrapper: Any,
    statement: str,
    *,
    before_kill: Any = None,
) -> Killer:
    """End the wrapper's session from the server while it runs ``statement``.

    Starts a thread that waits until the server shows the session running a
    statement that starts like ``statement`` (not a guessed delay), calls
    ``before_kill`` if given, then kills the session and waits until it is gone.
    Call it before sending the statement; ``join()`` the thread after.
    """
    thread = Killer(servers[vendor], server_id(wrapper), statement, before_kill)
    thread.start()
    return thread


def expire(vendor: str, wrapper: Any) -> None:
    """Lower the session's idle limit through the connection and wait past it."""
    with wrapper.cursor() as cursor:
        if vendor == "mysql":
            cursor.execute("SET SESSION wait_timeout = 1")
        else:
            cursor.execute("SET idle_session_timeout = '300ms'")
    wait_closed_by_server(fileno(wrapper))


def select_one(wrapper: Any) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 1")
        return int(cursor.fetchone()[0])


@contextlib.contextmanager
def receiving(signal: Any, alias: str) -> Iterator[list[dict[str, Any]]]:
    """The keyword arguments of each ``signal`` (connguard.signals) sent for
    ``alias`` while inside the block."""
    sent: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        if kwargs["alias"] == alias:
            sent.append(kwargs)

    signal.connect(receiver, weak=False)
    try:
        yield sent
    finally:
        signal.disconnect(receiver)


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)
