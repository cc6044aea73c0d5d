"""connguard's pytest plugin: test your own code against real disconnects.

Loaded through the ``pytest11`` entry point. Like pytest-django, it imports
nothing from Django when it loads: the fixtures import Django when they run.
They need database access outside a transaction, so use them in tests marked
``@pytest.mark.django_db(transaction=True)``, or in a ``TransactionTestCase``
(or a ``SimpleTestCase`` whose ``databases`` has the alias): inside the
transaction that a plain ``django_db`` test or a ``TestCase`` runs each test
in, no connection can be replaced. Where Django blocks the alias, or the test
runs in a transaction, a fixture fails the test with a ``FaultError`` that
says so, before it touches any connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

DEFAULT_ALIAS = "default"
_FAULTS = {"kill": "a kill", "expire": "an idle timeout"}
# The wrapper methods that django.test.SimpleTestCase replaces, on the wrapper
# itself, for each alias a test case may not use. From Django 6.1 a backend can
# list more in features.disallowed_simple_test_case_connection_methods.
_BLOCKED_BY_DJANGO = ("connect", "temporary_connection", "cursor", "chunked_cursor")


def _blocked_by_django(wrapper: Any) -> bool:
    """Whether the running Django test case forbids the alias (SimpleTestCase,
    or a test case whose ``databases`` leaves it out)."""
    listed = getattr(wrapper.features, "disallowed_simple_test_case_connection_methods", ())
    names = {*_BLOCKED_BY_DJANGO, *(name for name, _ in listed)}
    own = vars(wrapper)
    # Django puts a callable that raises on the instance, and puts the bound
    # method back there when the test case ends, so only a stand-in counts.
    return any(
        name in own and getattr(own[name], "__self__", None) is not wrapper for name in names
    )


def _connection(alias: str) -> Any:
    from django.db import connections

    from connguard import _faults

    wrapper = connections[alias]
    # Checked before anything is opened or ended: a fault must never reach a
    # connection the test may not use, even one left open by an earlier test.
    if _blocked_by_django(wrapper):
        raise _faults.FaultError(
            f"alias {alias!r} is blocked in this test: Django allows no connection or query on "
            f"it here (a SimpleTestCase, or a test case whose databases leave {alias!r} out), "
            f"so its connection can be neither ended nor replaced. Add {alias!r} to the test "
            "case's databases, on a TransactionTestCase (a TestCase runs each test in a "
            "transaction)"
        )
    if wrapper.in_atomic_block:
        raise _faults.FaultError(
            f"alias {alias!r} is inside a transaction (a django.test.TestCase, or a plain "
            "django_db test, runs each test in one), where no connection can be replaced: use "
            "a TransactionTestCase, or mark the test @pytest.mark.django_db(transaction=True)"
        )
    if wrapper.vendor in _faults.KILL_SQL:
        # Not on a vendor whose sessions cannot be ended: _faults says so, and a
        # connection opened here would be left open.
        wrapper.ensure_connection()
    return wrapper


def _kill(alias: str = DEFAULT_ALIAS) -> int:
    from connguard import _faults

    return _faults.kill(_connection(alias))


def _expire(alias: str = DEFAULT_ALIAS) -> None:
    from connguard import _faults

    _faults.expire(_connection(alias))


@pytest.fixture
def connguard_kill() -> Callable[..., int]:
    """``connguard_kill(alias="default")``: end the alias's current connection from
    the server side (a ``KILL`` / ``pg_terminate_backend()`` sent from a second
    connection), wait until the close reaches the socket, and return the
    server's id of the session it ended. Opens the connection first if needed."""
    return _kill


@pytest.fixture
def connguard_expire() -> Callable[..., None]:
    """``connguard_expire(alias="default")``: lower the idle limit of the alias's
    current session (``wait_timeout`` 1 s, ``idle_session_timeout`` 250 ms) and
    wait, polling its socket, until the server ends it for idleness."""
    return _expire


@contextlib.contextmanager
def _survives(alias: str = DEFAULT_ALIAS, *, via: str = "kill") -> Iterator[None]:
    from django.db import InterfaceError, OperationalError
    from django.db.backends.signals import connection_created

    from connguard import _faults

    if via not in _FAULTS:
        raise ValueError(f"via must be one of {', '.join(map(repr, _FAULTS))}, not {via!r}")
    (_kill if via == "kill" else _expire)(alias)
    opened: list[Any] = []

    def on_created(sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection.alias == alias:
            opened.append(connection)

    connection_created.connect(on_created)
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        raise AssertionError(
            f"the block did not survive {_FAULTS[via]} of the connection of {alias!r}: "
            f"{_faults.first_line(exc)}"
        ) from exc
    finally:
        connection_created.disconnect(on_created)
    if not opened:
        raise AssertionError(
            f"the block never opened a new connection on {alias!r} after {_FAULTS[via]}, "
            "so it proves nothing: use the alias inside the block"
        )


@pytest.fixture
def connguard_survives() -> Callable[..., contextlib.AbstractContextManager[None]]:
    """``with connguard_survives(alias="default", via="kill"):`` ends the alias's
    connection (``via="kill"`` or ``"expire"``), then runs the block, and fails
    the test unless the block finished without a connection error
    (``OperationalError``, ``InterfaceError``) and opened a new connection on the
    alias (so the block really used it after the fault)."""
    return _survives
