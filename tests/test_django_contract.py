"""The Django contract: what the guard relies on in Django (and in the drivers)
beyond its documented API, pinned by behaviour on real wrappers and real servers.

The guard subclasses Django's own backends and hooks private methods and
attributes of ``BaseDatabaseWrapper``. Each test here checks one assumption on
Django's *stock* backends, so that a Django release that changes one fails here,
with a message naming the Django version and the assumption, before it shows up
as a subtle guard bug. docs/how-it-works.md#django-contract lists them all, with
why the guard needs each one.

Most checks use a recording subclass of the stock ``DatabaseWrapper``: it logs
each call of a method the guard overrides or relies on, then defers to Django,
which is exactly how the guard itself combines with Django's classes.
"""

from __future__ import annotations

import ast
import collections
import contextlib
import inspect
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import django
import pytest
from django.db import (
    DatabaseError,
    Error,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    connections,
    transaction,
)
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.backends.utils import CursorWrapper
from django.db.utils import DatabaseErrorWrapper, load_backend
from django.utils.functional import cached_property

from testbed.servers import free_port
from tests.helpers import ALIAS, STOCK, kill, make_wrapper, select_one, server_id

CONTRACT_DOC = "docs/how-it-works.md#django-contract"


@contextlib.contextmanager
def assumes(assumption: str) -> Iterator[None]:
    """Check one assumption: any failure inside names the Django version and it.

    The one helper for the failure message, so every test reads the same, e.g.
    "Django 6.2: connguard assumes BaseDatabaseWrapper._cursor() calls
    close_if_health_check_failed() before create_cursor(); see docs/...".
    """
    try:
        yield
    except Exception as exc:  # an assert, or Django no longer having the attribute
        raise AssertionError(
            f"Django {django.get_version()}: connguard assumes {assumption}; "
            f"see {CONTRACT_DOC}\n{type(exc).__name__}: {exc}"
        ) from exc


@pytest.fixture(autouse=True)
def _db(servers: dict[str, Any], django_db_blocker: Any) -> Iterator[None]:
    # Private wrappers only (no tables), so no test database and no flush.
    with django_db_blocker.unblock():
        yield


# ##### A recording wrapper: Django's stock backend, every call logged #####


@dataclass(frozen=True)
class Call:
    name: str
    connected: bool
    in_atomic_block: bool
    autocommit: bool
    inside_error_wrapper: bool


class _RecordingErrorWrapper(DatabaseErrorWrapper):
    """Django's error wrapper, logging each entry and each exception it sees."""

    wrapper: Any

    def __enter__(self) -> None:
        wrapper = self.wrapper
        wrapper.record("wrap:" + (wrapper.stack[-1] if wrapper.stack else "?"))
        wrapper.wrap_depth += 1

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.wrapper.wrap_depth -= 1
        if exc_value is not None:
            self.wrapper.errors_seen.append(exc_value)
        super().__exit__(exc_type, exc_value, traceback)


class _Recording:
    """Mixed in first, as the guard is: logs, runs one-shot hooks, defers to Django."""

    log: list[Call]
    stack: list[str]
    wrap_depth: int
    errors_seen: list[BaseException]
    hooks: dict[str, Callable[[Any], None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.log, self.stack, self.wrap_depth, self.errors_seen, self.hooks = [], [], 0, [], {}
        super().__init__(*args, **kwargs)

    @property
    def calls(self) -> list[str]:
        return [call.name for call in self.log]

    def only(self, *names: str) -> list[str]:
        return [name for name in self.calls if name in names]

    def record(self, name: str) -> Call:
        db: Any = self
        call = Call(
            name,
            db.connection is not None,
            db.in_atomic_block,
            db.autocommit,
            self.wrap_depth > 0,
        )
        self.log.append(call)
        return call

    def _run(self, name: str, method: Callable[..., Any], *args: Any) -> Any:
        self.record(name)
        hook = self.hooks.pop(name, None)
        if hook is not None:
            hook(self)
        self.stack.append(name)
        try:
            return method(*args)
        finally:
            self.stack.pop()

    @cached_property
    def wrap_database_errors(self) -> _RecordingErrorWrapper:
        return _RecordingErrorWrapper(self)

    def close_if_health_check_failed(self) -> None:
        self._run("close_if_health_check_failed", super().close_if_health_check_failed)

    def _cursor(self, name: str | None = None) -> Any:
        return self._run("_cursor", super()._cursor, name)

    def create_cursor(self, name: str | None = None) -> Any:
        return self._run("create_cursor", super().create_cursor, name)

    def ensure_connection(self) -> None:
        self._run("ensure_connection", super().ensure_connection)

    def connect(self) -> None:
        self._run("connect", super().connect)

    def get_new_connection(self, conn_params: Any) -> Any:
        return self._run("get_new_connection", super().get_new_connection, conn_params)

    def init_connection_state(self) -> None:
        self._run("init_connection_state", super().init_connection_state)

    def set_autocommit(
        self, autocommit: bool, force_begin_transaction_with_broken_autocommit: bool = False
    ) -> None:
        name = f"set_autocommit({autocommit})"
        force = force_begin_transaction_with_broken_autocommit
        self._run(name, super().set_autocommit, autocommit, force)

    def _set_autocommit(self, autocommit: bool) -> None:
        self._run(f"_set_autocommit({autocommit})", super()._set_autocommit, autocommit)

    def _commit(self) -> None:
        self._run("_commit", super()._commit)

    def _rollback(self) -> None:
        self._run("_rollback", super()._rollback)

    def _close(self) -> None:
        self._run("_close", super()._close)

    def is_usable(self) -> bool:
        return bool(self._run("is_usable", super().is_usable))


_classes: dict[tuple[str, type], type] = {}


def _settings(vendor: str, **overrides: Any) -> dict[str, Any]:
    base = dict(connections.settings[ALIAS[vendor]])
    base.pop("TEST", None)
    base["ENGINE"] = STOCK[vendor]
    base["OPTIONS"] = {**(base.get("OPTIONS") or {}), **overrides.pop("OPTIONS", {})}
    base.update(overrides)
    return connections.configure_settings({"default": base})["default"]


@pytest.fixture
def recording() -> Iterator[Callable[..., Any]]:
    """``recording(vendor, mixin=_Recording, alias="contract", **settings)``: a stock
    wrapper of the vendor, with every call logged."""
    made: list[Any] = []

    def make(
        vendor: str, mixin: type = _Recording, alias: str = "contract", **overrides: Any
    ) -> Any:
        stock = load_backend(STOCK[vendor]).DatabaseWrapper
        cls = _classes.get((vendor, mixin))
        if cls is None:
            cls = _classes[(vendor, mixin)] = type(f"Recording{vendor}", (mixin, stock), {})
        wrapper = cls(_settings(vendor, **overrides), alias)
        made.append(wrapper)
        return wrapper

    yield make
    for wrapper in made:
        with contextlib.suppress(Exception):
            wrapper.inc_thread_sharing()
            wrapper.close()


@contextlib.contextmanager
def registered(wrapper: Any) -> Iterator[str]:
    """Make a private wrapper ``connections[wrapper.alias]`` (for atomic()) in this thread."""
    connections[wrapper.alias] = wrapper
    try:
        yield wrapper.alias
    finally:
        del connections[wrapper.alias]


SESSION_ID_SQL = {"mysql": "SELECT CONNECTION_ID()", "postgresql": "SELECT pg_backend_pid()"}


# ##### close_if_health_check_failed(): the guard's one hook before every use #####


def test_cursor_runs_the_health_check_before_connecting_and_creating_the_cursor(
    vendor: str, recording: Any
) -> None:
    with assumes(
        "BaseDatabaseWrapper._cursor() calls close_if_health_check_failed() before "
        "ensure_connection() and create_cursor(), for cursor() and chunked_cursor()"
    ):
        wrapper = recording(vendor)
        wrapper.cursor().close()  # the first use: the hook runs with no connection yet
        assert wrapper.log[0] == Call("_cursor", False, False, False, False), wrapper.log
        assert wrapper.log[1].name == "close_if_health_check_failed"
        assert not wrapper.log[1].connected
        for open_cursor in (wrapper.cursor, wrapper.chunked_cursor):
            wrapper.log.clear()
            open_cursor().close()
            used = wrapper.only(
                "close_if_health_check_failed", "ensure_connection", "create_cursor"
            )
            assert used == ["close_if_health_check_failed", "ensure_connection", "create_cursor"]


def test_a_connection_closed_by_the_health_check_is_reopened_for_the_cursor(
    vendor: str, recording: Any
) -> None:
    with assumes(
        "when close_if_health_check_failed() closes the connection, _cursor() opens a new "
        "one through connect() and creates the cursor on it"
    ):
        wrapper = recording(vendor)
        select_one(wrapper)
        before = server_id(wrapper)
        wrapper.log.clear()
        wrapper.hooks["close_if_health_check_failed"] = lambda db: db.close()
        with wrapper.cursor() as cursor:
            cursor.execute(SESSION_ID_SQL[vendor])
            now = cursor.fetchone()[0]
        assert now == server_id(wrapper) != before
        calls = wrapper.calls
        assert calls[:3] == ["_cursor", "close_if_health_check_failed", "_close"], calls
        assert calls.index("connect") < len(calls) - 1 - calls[::-1].index("create_cursor")


def test_set_autocommit_runs_the_health_check_before_connecting(
    vendor: str, recording: Any
) -> None:
    with assumes(
        "BaseDatabaseWrapper.set_autocommit() calls close_if_health_check_failed() before "
        "ensure_connection() and _set_autocommit(), and a connection it closed is reopened first"
    ):
        wrapper = recording(vendor)
        select_one(wrapper)
        for autocommit in (False, True):
            wrapper.log.clear()
            wrapper.set_autocommit(autocommit)
            used = wrapper.only(
                "close_if_health_check_failed",
                "ensure_connection",
                f"_set_autocommit({autocommit})",
            )
            assert used == [
                "close_if_health_check_failed",
                "ensure_connection",
                f"_set_autocommit({autocommit})",
            ]
        before = server_id(wrapper)
        wrapper.log.clear()
        wrapper.hooks["close_if_health_check_failed"] = lambda db: db.close()
        wrapper.set_autocommit(False)
        assert server_id(wrapper) != before
        calls = wrapper.calls
        assert calls.index("connect") < calls.index("_set_autocommit(False)"), calls
        assert wrapper.get_autocommit() is False
        wrapper.rollback()
        wrapper.set_autocommit(True)


def test_close_if_health_check_failed_is_called_from_cursor_and_set_autocommit_only() -> None:
    # Source inspection, as the one exception: that Django calls the hook nowhere
    # else cannot be observed. Every call site in the installed Django.
    with assumes(
        "Django calls close_if_health_check_failed() only in BaseDatabaseWrapper._cursor() "
        "and BaseDatabaseWrapper.set_autocommit() (and backends' overrides through super())"
    ):
        root = pathlib.Path(django.__file__).parent
        sites = set()
        for path in root.rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if "close_if_health_check_failed" not in text:
                continue
            module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
            for cls in ast.walk(ast.parse(text)):
                if not isinstance(cls, ast.ClassDef):
                    continue
                for func in cls.body:
                    if not isinstance(func, ast.FunctionDef):
                        continue
                    for node in ast.walk(func):
                        if (
                            isinstance(node, ast.Call)
                            and isinstance(node.func, ast.Attribute)
                            and node.func.attr == "close_if_health_check_failed"
                            and func.name != "close_if_health_check_failed"
                        ):
                            sites.add(f"{module}.{cls.name}.{func.name}")
        base = "django.db.backends.base.base.BaseDatabaseWrapper"
        assert sites == {f"{base}._cursor", f"{base}.set_autocommit"}


def test_atomic_starts_and_ends_through_set_autocommit_outside_the_block(
    vendor: str, recording: Any
) -> None:
    with assumes(
        "atomic() starts with set_autocommit(False) before it sets in_atomic_block, and the "
        "outermost block ends by unsetting in_atomic_block, then _commit() or _rollback(), "
        "then set_autocommit(True); a savepoint goes through _cursor()"
    ):
        wrapper = recording(vendor)
        select_one(wrapper)
        with registered(wrapper) as alias:
            for fails in (False, True):
                wrapper.log.clear()
                with contextlib.suppress(KeyError), transaction.atomic(using=alias):
                    assert wrapper.in_atomic_block and wrapper.autocommit is False
                    with transaction.atomic(using=alias):  # a savepoint
                        pass
                    if fails:
                        raise KeyError("the block fails")
                log = wrapper.log
                start = [c for c in log if c.name == "close_if_health_check_failed"]
                # Entering: outside the block, in autocommit, so the guard may
                # still replace the connection; the savepoint: inside it.
                assert start[0] == Call("close_if_health_check_failed", True, False, True, False)
                assert start[1].in_atomic_block and start[1].autocommit is False
                end = "_rollback" if fails else "_commit"
                ending = [c for c in log if c.name in (end, "set_autocommit(True)")]
                assert [c.name for c in ending] == [end, "set_autocommit(True)"], log
                # Django unsets in_atomic_block before it commits or rolls back.
                assert ending[0] == Call(end, True, False, False, False)
                assert wrapper.autocommit is True and not wrapper.in_atomic_block


def test_connect_sets_up_the_session_and_then_sends_connection_created(
    vendor: str, recording: Any
) -> None:
    with assumes(
        "connect() calls get_new_connection(), set_autocommit() (so close_if_health_check_failed() "
        "runs mid-connect, with the new connection set), init_connection_state(), then sends "
        "connection_created(sender=type(wrapper), connection=wrapper), on every connect; "
        "connection stays None if get_new_connection() fails, and is set if the setup after "
        "it fails"
    ):
        wrapper = recording(vendor)
        sent: list[tuple[Any, Any, int]] = []

        def on_created(sender: Any, connection: Any, **kwargs: Any) -> None:
            if connection is wrapper:
                sent.append((sender, connection, threading.get_ident()))
                wrapper.record("connection_created")

        connection_created.connect(on_created)
        try:
            for _ in range(2):  # a replacement replays the whole session setup
                wrapper.log.clear()
                wrapper.ensure_connection()
                calls = wrapper.calls
                order = [
                    "connect",
                    "get_new_connection",
                    f"set_autocommit({wrapper.settings_dict['AUTOCOMMIT']})",
                    "init_connection_state",
                    "connection_created",
                ]
                assert [name for name in calls if name in order] == order, calls
                checks = [
                    c
                    for c in wrapper.log[calls.index("get_new_connection") :]
                    if c.name == "close_if_health_check_failed"
                ]
                assert checks and checks[0].connected, wrapper.log
                # connect() runs inside the error wrapper (ensure_connection's).
                assert wrapper.log[calls.index("get_new_connection")].inside_error_wrapper
                wrapper.close()
        finally:
            connection_created.disconnect(on_created)
        assert [(s, c) for s, c, _ in sent] == [(type(wrapper), wrapper)] * 2
        assert {ident for _, _, ident in sent} == {threading.get_ident()}

        def setup_fails(db: Any) -> None:
            raise OperationalError("the session setup failed")

        wrapper.hooks["init_connection_state"] = setup_fails
        with pytest.raises(OperationalError, match="the session setup failed"):
            wrapper.ensure_connection()
        assert wrapper.connection is not None  # half set up: the guard marks it dead
        wrapper.close()
        unreachable = recording(vendor, alias="unreachable", PORT=str(free_port()))
        with pytest.raises(OperationalError):
            unreachable.ensure_connection()
        assert unreachable.connection is None


def test_connect_resets_the_per_connection_state(vendor: str, recording: Any) -> None:
    with assumes(
        "connect() resets needs_rollback, closed_in_transaction, errors_occurred and "
        "in_atomic_block, sets health_check_done, and sets close_at to time.monotonic() + "
        "CONN_MAX_AGE (None for None)"
    ):
        for max_age in (None, 0, 60):
            wrapper = recording(vendor, CONN_MAX_AGE=max_age)
            wrapper.needs_rollback = wrapper.closed_in_transaction = True
            wrapper.errors_occurred = True
            before = time.monotonic()
            wrapper.ensure_connection()
            after = time.monotonic()
            assert not (wrapper.needs_rollback or wrapper.closed_in_transaction)
            assert not (wrapper.errors_occurred or wrapper.in_atomic_block)
            assert wrapper.health_check_done is True
            if max_age is None:
                assert wrapper.close_at is None
            else:
                assert before + max_age <= wrapper.close_at <= after + max_age
            wrapper.close()


def test_get_connection_params_passes_options_through(vendor: str) -> None:
    with assumes(
        "get_connection_params() passes every OPTIONS key it does not know to the driver, "
        "so the guard must remove OPTIONS['connguard'] itself"
    ):
        wrapper = make_wrapper(vendor, guarded=False, OPTIONS={"connguard": {"validate_after": 5}})
        assert wrapper.get_connection_params()["connguard"] == {"validate_after": 5}


def test_the_database_module_and_vendor(vendor: str) -> None:
    with assumes(
        "a backend's DatabaseWrapper.Database is the DB-API module itself (its name tells the "
        "driver) and DatabaseWrapper.vendor is 'mysql' or 'postgresql'"
    ):
        wrapper = make_wrapper(vendor, guarded=False)
        assert inspect.ismodule(wrapper.Database)
        drivers = {"mysql": {"MySQLdb", "pymysql"}, "postgresql": {"psycopg", "psycopg2"}}
        assert wrapper.Database.__name__.split(".")[0] in drivers[vendor]
        assert issubclass(wrapper.Database.OperationalError, wrapper.Database.Error)
        assert wrapper.vendor == vendor


# ##### wrap_database_errors: where every driver error passes #####


def test_the_error_wrapper_translates_driver_errors(vendor: str) -> None:
    with assumes(
        "wrap_database_errors is a cached DatabaseErrorWrapper(wrapper) keeping .wrapper, whose "
        "__exit__(exc_type, exc_value, traceback) re-raises a driver error as Django's class of "
        "the same name with the same args, chained from it, sets errors_occurred except for "
        "DataError and IntegrityError, and lets every other exception through unchanged"
    ):
        wrapper = make_wrapper(vendor, guarded=False)
        errors = wrapper.wrap_database_errors
        assert isinstance(errors, DatabaseErrorWrapper) and errors.wrapper is wrapper
        assert wrapper.wrap_database_errors is errors
        assert isinstance(
            inspect.getattr_static(BaseDatabaseWrapper, "wrap_database_errors"), cached_property
        )
        assert not errors.__exit__(None, None, None)
        with pytest.raises(ProgrammingError) as raised, wrapper.cursor() as cursor:
            cursor.execute("SELEC 1")
        assert isinstance(raised.value.__cause__, wrapper.Database.ProgrammingError)
        assert raised.value.args == raised.value.__cause__.args
        assert wrapper.errors_occurred is True
        wrapper.rollback()  # a successful rollback (or commit) clears it
        assert wrapper.errors_occurred is False
        with wrapper.cursor() as cursor:
            cursor.execute("CREATE TEMPORARY TABLE contract_unique (id int PRIMARY KEY)")
            cursor.execute("INSERT INTO contract_unique VALUES (1)")
            with pytest.raises(IntegrityError):
                cursor.execute("INSERT INTO contract_unique VALUES (1)")
        assert wrapper.errors_occurred is False
        translated = OperationalError("already Django's")
        with pytest.raises(OperationalError) as again, errors:
            raise translated
        assert again.value is translated
        with pytest.raises(KeyError), errors:
            raise KeyError("not the database's")


def test_every_driver_call_runs_inside_the_error_wrapper(vendor: str, recording: Any) -> None:
    with assumes(
        "Django runs every driver call inside self.wrap_database_errors: connect() (from "
        "ensure_connection()), create_cursor(), execute, fetch*, iteration (abandoned: "
        "GeneratorExit), _commit(), _rollback(), _set_autocommit() and _close()"
    ):
        wrapper = recording(vendor)
        wrapper.ensure_connection()
        wrapper.log.clear()
        with wrapper.cursor() as cursor:
            assert wrapper.log[wrapper.calls.index("create_cursor")].inside_error_wrapper
            with pytest.raises(ProgrammingError):
                cursor.execute("SELEC 1")
            assert isinstance(wrapper.errors_seen[-1], wrapper.Database.ProgrammingError)
        with wrapper.cursor() as cursor:
            with pytest.raises(DatabaseError):
                cursor.fetchone()  # nothing executed: the driver refuses
            assert isinstance(wrapper.errors_seen[-1], wrapper.Database.Error)
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1 UNION ALL SELECT 2")
            rows = iter(cursor)
            next(rows)
            rows.close()
            assert isinstance(wrapper.errors_seen[-1], GeneratorExit)
        wrapper.log.clear()
        wrapper.set_autocommit(False)
        select_one(wrapper)
        wrapper.commit()
        select_one(wrapper)
        wrapper.rollback()
        wrapper.set_autocommit(True)
        wrapper.close()
        for private in (
            "_set_autocommit(False)",
            "_commit",
            "_rollback",
            "_set_autocommit(True)",
            "_close",
        ):
            assert f"wrap:{private}" in wrapper.calls, (private, wrapper.calls)
        unreachable = recording(vendor, alias="unreachable", PORT=str(free_port()))
        with pytest.raises(OperationalError):
            unreachable.ensure_connection()
        assert isinstance(unreachable.errors_seen[-1], unreachable.Database.OperationalError)


# ##### Cursors and execute wrappers: how the guard retries a statement #####


def test_the_cursor_wrapper_reads_its_raw_cursor_at_every_call(vendor: str, recording: Any) -> None:
    with assumes(
        "CursorWrapper reads self.cursor at every execute() and fetch*(), so assigning a new "
        "raw cursor (what the guard does on a retry) redirects the next call"
    ):
        wrapper, other = recording(vendor), recording(vendor, alias="other")
        other.ensure_connection()
        with wrapper.cursor() as cursor:
            assert isinstance(cursor, CursorWrapper)
            stale = cursor.cursor
            cursor.cursor = other.create_cursor(None)
            stale.close()
            cursor.execute(SESSION_ID_SQL[vendor])
            assert cursor.fetchone()[0] == server_id(other)


class _InnermostRetry:
    """Like the guard's cursor mixin: wrap the innermost executor, and run it twice."""

    def _execute_with_wrappers(self, sql: Any, params: Any, many: bool, executor: Any) -> Any:
        def twice(sql: Any, params: Any, many: bool, context: dict[str, Any]) -> Any:
            _innermost.append((sql, params, many, context["connection"], context["cursor"]))
            executor(sql, params, many, context)  # the first run...
            cursor = context["cursor"]
            other = _innermost_other[0]
            stale, cursor.cursor = cursor.cursor, other.create_cursor(None)
            stale.close()
            return executor(sql, params, many, context)  # ...and the retry, on the new cursor

        return super()._execute_with_wrappers(sql, params, many, twice)  # type: ignore[misc]


_innermost: list[Any] = []
_innermost_other: list[Any] = []


class _GuardedCursors(_Recording):
    """make_cursor()/make_debug_cursor() as the guard overrides them."""

    def make_cursor(self, cursor: Any) -> Any:
        return _retrying(super().make_cursor(cursor))

    def make_debug_cursor(self, cursor: Any) -> Any:
        return _retrying(super().make_debug_cursor(cursor))


def _retrying(wrapped: Any) -> Any:
    wrapped.__class__ = type("Retrying", (_InnermostRetry, type(wrapped)), {})
    return wrapped


@pytest.mark.parametrize("debug", [False, True], ids=["cursor", "debug-cursor"])
def test_a_cursor_wrapper_can_rerun_a_statement_innermost_on_a_new_raw_cursor(
    vendor: str, recording: Any, settings: Any, debug: bool
) -> None:
    with assumes(
        "every cursor comes from make_cursor() (make_debug_cursor() with DEBUG), returns a "
        "CursorWrapper whose execute()/executemany() call "
        "_execute_with_wrappers(sql, params, many, executor) with the innermost executor, "
        "called as executor(sql, params, many, context) with context['connection'] and "
        "context['cursor']; it may be called again; execute_wrappers stays the user's list"
    ):
        settings.DEBUG = debug
        wrapper = recording(vendor, mixin=_GuardedCursors)
        other = recording(vendor, alias="other")
        assert isinstance(wrapper.execute_wrappers, list) and wrapper.execute_wrappers == []
        assert wrapper.execute_wrappers is not other.execute_wrappers
        other.ensure_connection()
        _innermost_other[:] = [other]
        wrapper.ensure_connection()  # MySQL's first connect runs a query of its own
        _innermost.clear()
        outer: list[Any] = []

        def user_wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            outer.append(sql)
            return execute(sql, params, many, context)

        with wrapper.execute_wrapper(user_wrapper), wrapper.cursor() as cursor:
            assert isinstance(cursor, CursorWrapper) and isinstance(cursor, _InnermostRetry)
            cursor.execute(SESSION_ID_SQL[vendor])
            assert cursor.fetchone()[0] == server_id(other)
            assert _innermost == [(SESSION_ID_SQL[vendor], None, False, wrapper, cursor)]
            assert outer == [SESSION_ID_SQL[vendor]]  # the user's wrapper saw one call
            _innermost.clear()
            cursor.executemany("SELECT %s", [(1,), (2,)])
            assert _innermost[0][2] is True
        assert wrapper.execute_wrappers == []


def test_create_cursor_takes_the_name_of_a_server_side_cursor(vendor: str, recording: Any) -> None:
    with assumes(
        "create_cursor(name) makes the raw cursor that CursorWrapper.cursor holds, and a "
        "PostgreSQL chunked_cursor()'s raw cursor carries its name in .name"
    ):
        wrapper = recording(vendor)
        with wrapper.cursor() as cursor:
            kind = type(cursor.cursor)
            assert getattr(cursor.cursor, "name", None) is None
        fresh = wrapper.create_cursor(None)
        assert type(fresh) is kind
        fresh.close()
        if vendor == "postgresql":
            with wrapper.chunked_cursor() as chunked:
                name = chunked.cursor.name
                assert isinstance(name, str) and name
                again = wrapper.create_cursor(name)
                assert again.name == name
                again.close()


# ##### Transactions: close, commit, rollback and the commit hooks #####


def test_close_commit_and_rollback_go_through_the_private_methods(
    vendor: str, recording: Any
) -> None:
    with assumes(
        "close() calls _close() only when there is a connection and then forgets it, commit() "
        "calls _commit(), rollback() calls _rollback() and resets needs_rollback; close() "
        "inside atomic() keeps the closed connection and sets closed_in_transaction and "
        "needs_rollback, and the block's end forgets it"
    ):
        wrapper = recording(vendor)
        select_one(wrapper)
        wrapper.log.clear()
        wrapper.set_autocommit(False)
        select_one(wrapper)
        wrapper.commit()
        select_one(wrapper)
        wrapper.needs_rollback = True
        wrapper.rollback()
        assert wrapper.needs_rollback is False
        wrapper.set_autocommit(True)
        wrapper.close()
        assert wrapper.only("_commit", "_rollback", "_close") == ["_commit", "_rollback", "_close"]
        assert wrapper.connection is None
        wrapper.log.clear()
        wrapper.close()  # no connection: nothing to close
        assert "_close" not in wrapper.calls
        with registered(wrapper) as alias:
            with pytest.raises(Error), transaction.atomic(using=alias):
                select_one(wrapper)
                wrapper.close()
                assert wrapper.connection is not None
                assert wrapper.closed_in_transaction and wrapper.needs_rollback
                select_one(wrapper)  # on the closed connection: fails
            assert wrapper.connection is None
            assert select_one(wrapper) == 1


def test_a_connection_dropped_inside_atomic_fails_the_block(vendor: str, recording: Any) -> None:
    with assumes(
        "with connection = None and closed_in_transaction = needs_rollback = True inside "
        "atomic() (what the guard's fork handler sets), the next use raises ProgrammingError, "
        "the block ends without COMMIT or ROLLBACK, and the next use after it reconnects"
    ):
        wrapper = recording(vendor)
        with registered(wrapper) as alias:
            select_one(wrapper)
            raw = wrapper.connection
            wrapper.log.clear()
            try:
                with (
                    pytest.raises(ProgrammingError, match="new connection in an atomic block"),
                    transaction.atomic(using=alias),
                ):
                    select_one(wrapper)
                    wrapper.connection = None
                    wrapper.closed_in_transaction = wrapper.needs_rollback = True
                    select_one(wrapper)
                assert wrapper.connection is None
                assert not {"_commit", "_rollback", "_close"} & set(wrapper.calls)
                assert select_one(wrapper) == 1
                assert not wrapper.closed_in_transaction
            finally:
                raw.close()


def test_commit_hooks_run_from_set_autocommit_on_the_current_list(
    vendor: str, recording: Any
) -> None:
    class _DropsOnAutocommitOn(_Recording):
        # What the guard's _set_autocommit() does when the connection is lost as
        # autocommit comes back on after a COMMIT: keep the hooks, drop the connection.
        def _set_autocommit(self, autocommit: bool) -> None:
            if autocommit and self.hooks.pop("drop", None):
                self.record("_set_autocommit(True)")
                hooks = self.run_on_commit
                self.close()
                self.run_on_commit = hooks
                return
            super()._set_autocommit(autocommit)

    with assumes(
        "on_commit() stores (savepoint ids, func, robust) in run_on_commit; commit() sets "
        "run_commit_hooks_on_set_autocommit_on and set_autocommit(True) runs "
        "run_and_clear_commit_hooks() after _set_autocommit() returns, on the list "
        "self.run_on_commit holds then; close() rebinds run_on_commit to a new list"
    ):
        wrapper = recording(vendor, mixin=_DropsOnAutocommitOn)
        with registered(wrapper) as alias:
            for drop in (False, True):
                wrapper.log.clear()
                with transaction.atomic(using=alias):
                    transaction.on_commit(lambda: wrapper.record("hook"), using=alias)
                    ids, func, robust = wrapper.run_on_commit[-1]
                    assert isinstance(ids, set) and callable(func) and robust is False
                    if drop:
                        wrapper.hooks["drop"] = lambda db: None
                calls = wrapper.calls
                after = calls[calls.index("_commit") :]  # not the connect's, at the start
                assert after.index("_set_autocommit(True)") < after.index("hook"), calls
                assert wrapper.autocommit is True
                assert wrapper.run_commit_hooks_on_set_autocommit_on is False
                assert wrapper.run_on_commit == []
            assert wrapper.connection is None  # dropped, and the hook still ran
            ran: list[str] = []
            wrapper.run_on_commit = [(set(), lambda: ran.append("direct"), False)]
            wrapper.run_and_clear_commit_hooks()
            assert ran == ["direct"] and wrapper.run_on_commit == []
            hooks = wrapper.run_on_commit
            wrapper.close()
            assert wrapper.run_on_commit is not hooks


# ##### State the job boundaries read and write #####


def test_health_check_done_arms_the_stock_health_check(vendor: str, recording: Any) -> None:
    with assumes(
        "with CONN_HEALTH_CHECKS, Django's close_if_health_check_failed() calls is_usable() "
        "only while health_check_done is False, and sets it; the job boundaries re-arm it"
    ):
        wrapper = recording(vendor, CONN_HEALTH_CHECKS=True)
        select_one(wrapper)
        wrapper.log.clear()
        select_one(wrapper)
        assert "is_usable" not in wrapper.calls
        wrapper.health_check_done = False
        select_one(wrapper)
        select_one(wrapper)
        assert wrapper.calls.count("is_usable") == 1 and wrapper.health_check_done is True


def test_queries_log_is_a_deque(vendor: str, recording: Any) -> None:
    with assumes("queries_log is a deque of the logged queries, which the job boundaries clear"):
        wrapper = recording(vendor)
        wrapper.ensure_connection()  # MySQL's connect logs queries of its own
        wrapper.force_debug_cursor = True
        wrapper.queries_log.clear()
        select_one(wrapper)
        assert isinstance(wrapper.queries_log, collections.deque) and len(wrapper.queries_log) == 1
        wrapper.queries_log.clear()
        assert wrapper.queries == []


def test_thread_sharing_and_initialized_connections(vendor: str, recording: Any) -> None:
    with assumes(
        "a wrapper refuses close() from another thread unless inc_thread_sharing() was called "
        "(validate_thread_sharing()), and connections.all(initialized_only=True) lists only "
        "the calling thread's wrappers that were accessed"
    ):
        built: list[Any] = []
        listed: list[list[Any]] = []

        def in_a_worker() -> None:
            listed.append(connections.all(initialized_only=True))
            built.append(recording(vendor, alias="worker"))
            built[0].ensure_connection()
            listed.append(connections.all(initialized_only=True))
            listed.append([connections[ALIAS[vendor]]])
            listed.append(connections.all(initialized_only=True))

        mine = connections[ALIAS[vendor]]
        worker = threading.Thread(target=in_a_worker)
        worker.start()
        worker.join()
        assert listed[0] == [] and listed[1] == []
        assert listed[3] == listed[2] and listed[2][0] is not mine
        assert mine in connections.all(initialized_only=True)
        wrapper = built[0]
        with pytest.raises(DatabaseError, match="can only be used in that same thread"):
            wrapper.close()
        assert wrapper.connection is not None
        wrapper.inc_thread_sharing()
        try:
            wrapper.close()
        finally:
            wrapper.dec_thread_sharing()
        assert wrapper.connection is None


# ##### Django's PostgreSQL pool, and psycopg_pool's privates #####

_pools = 0


@pytest.fixture
def pooled() -> Iterator[Callable[..., Any]]:
    from django.conf import settings

    if settings.PG_DRIVER != "psycopg":
        pytest.skip("Django's pool needs psycopg 3")
    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        global _pools
        _pools += 1  # pools are per alias: one alias per wrapper
        wrapper = make_wrapper(
            "postgresql",
            guarded=False,
            alias=f"contract_pool{_pools}",
            CONN_MAX_AGE=0,
            OPTIONS={"pool": {"min_size": 1, "max_size": 1}},
            **overrides,
        )
        made.append(wrapper)
        return wrapper

    yield make
    for wrapper in made:
        with contextlib.suppress(Exception):
            wrapper.close()
        with contextlib.suppress(Exception):
            wrapper.close_pool()


def test_the_postgresql_pool_lives_in_a_class_dict(pooled: Any) -> None:
    with assumes(
        "PostgreSQL's DatabaseWrapper keeps its pools in the class attribute _connection_pools "
        "(a dict by alias, shared with subclasses), the pool property returns the alias's "
        "psycopg_pool.ConnectionPool (None without OPTIONS['pool']), and close_pool() closes "
        "it and removes it from the dict"
    ):
        from psycopg_pool import ConnectionPool

        wrapper = pooled()
        cls = type(wrapper)
        guarded = load_backend("connguard.db.backends.postgresql").DatabaseWrapper
        assert isinstance(inspect.getattr_static(cls, "_connection_pools"), dict)
        assert guarded._connection_pools is cls._connection_pools
        pool = wrapper.pool
        assert isinstance(pool, ConnectionPool) and cls._connection_pools[wrapper.alias] is pool
        assert make_wrapper("postgresql", guarded=False).pool is None
        wrapper.close_pool()
        assert wrapper.alias not in cls._connection_pools and pool.closed


def test_the_postgresql_pool_lends_and_takes_back_connections(pooled: Any, servers: Any) -> None:
    with assumes(
        "a pooled get_new_connection() draws a connection with pool.getconn() (before "
        "connect() sets anything up; a second call draws another); _close() gives it back "
        "with putconn() and sets connection to None; the pool's idle connections are in "
        "pool._pool (each with fileno()); and a connection closed before it goes back is "
        "discarded, never lent again"
    ):
        wrapper = pooled()
        wrapper.ensure_connection()
        raw = wrapper.connection
        assert wrapper.pool.max_size == 1
        wrapper.close()
        drawn = wrapper.get_new_connection(wrapper.get_connection_params())
        assert drawn is raw  # the pool's only connection
        drawn.close()  # what the guard does to a dead one it drew...
        wrapper.pool.putconn(drawn)  # ...before it hands it back
        wrapper.ensure_connection()
        assert wrapper.connection is not drawn
        raw = wrapper.connection
        wrapper.close()
        assert wrapper.connection is None
        idle = list(wrapper.pool._pool)
        assert raw in idle and all(conn.fileno() >= 0 for conn in idle)
        wrapper.ensure_connection()
        assert wrapper.connection is raw  # lent again: the pool's only connection
        raw.close()  # what the guard does to a dead connection before _close()
        wrapper.close()
        assert raw not in wrapper.pool._pool
        wrapper.ensure_connection()
        assert wrapper.connection is not raw and select_one(wrapper) == 1


def test_the_postgresql_pool_skips_django_s_health_check(pooled: Any, servers: Any) -> None:
    with assumes(
        "PostgreSQL's close_if_health_check_failed() does nothing for a pooled connection, "
        "even with CONN_HEALTH_CHECKS, which is why the guard checks it itself instead of "
        "calling super()"
    ):
        wrapper = pooled(CONN_HEALTH_CHECKS=True)
        wrapper.ensure_connection()
        raw = wrapper.connection
        kill(servers, "postgresql", wrapper)
        wrapper.health_check_done = False
        wrapper.close_if_health_check_failed()
        assert wrapper.connection is raw
        with pytest.raises((OperationalError, InterfaceError)):
            select_one(wrapper)


# ##### Driver privates #####


def test_pymysql_keeps_its_socket_in_sock() -> None:
    pymysql = pytest.importorskip("pymysql")
    with assumes(
        "a PyMySQL connection (which has no fileno()) keeps its socket in ._sock while open, "
        "and None once closed; ping(reconnect=False) never reconnects"
    ):
        settings_dict = connections.settings[ALIAS["mysql"]]
        conn = pymysql.connect(
            host=settings_dict["HOST"],
            port=int(settings_dict["PORT"]),
            user=settings_dict["USER"],
            password=settings_dict["PASSWORD"],
            database=settings_dict["NAME"],
        )
        try:
            assert conn._sock is not None and conn._sock.fileno() >= 0
            conn.ping(reconnect=False)
        finally:
            conn.close()
        assert conn._sock is None
        with pytest.raises(pymysql.Error):
            conn.ping(reconnect=False)
        assert conn._sock is None
