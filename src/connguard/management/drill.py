"""``manage.py connguard drill``: prove recovery from disconnects, for real.

The drill opens a connection of its own with the alias's settings, has the
server end it twice (a kill from a second connection it also opened, then an
idle timeout lowered for that one session), and runs a query through the
alias's backend after each. It touches no other connection, writes no data and
changes no global setting, so it is safe against production.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.core.management.base import CommandError

from connguard import _faults, checks, signals


class Drill:
    def __init__(self, alias: str, write: Callable[[str], None]) -> None:
        from django.db import connections

        self.alias, self.write = alias, write
        info = checks.describe(alias, connections.settings[alias])
        if info is None:
            raise CommandError(f"the ENGINE of {alias!r} cannot be loaded: run manage.py check")
        if info.engine_error is not None:
            raise CommandError(f"the ENGINE of {alias!r} cannot be loaded: {info.engine_error}")
        if info.error is not None:
            raise CommandError(info.error)
        if info.vendor is None or info.vendor not in checks.VENDORS:
            raise CommandError(
                f"the drill runs on MySQL, MariaDB and PostgreSQL; {alias!r} is {info.vendor}"
            )
        self.info = info
        self.vendor: str = info.vendor
        self.wrapper = _faults.open_wrapper(connections.settings[alias], alias)
        self.step = 0
        self.failures: list[str] = []
        self.replaced: list[str] = []

    def _on_replaced(self, sender: Any, connection: Any, reason: str, **kwargs: Any) -> None:
        if connection is self.wrapper:
            self.replaced.append(reason)

    @contextlib.contextmanager
    def _step(self, title: str) -> Iterator[list[str]]:
        """Time one step; the block appends what it found to the yielded list."""
        self.step += 1
        notes: list[str] = []
        started = time.perf_counter()
        yield notes
        elapsed = (time.perf_counter() - started) * 1000
        self.write(f"  {self.step}. {title}: {' '.join(notes) or 'ok'} ({elapsed:.1f} ms)")

    def run(self) -> None:
        wrapper, vendor = self.wrapper, self.vendor
        guard = "through the guard" if self.info.active else "with Django's stock backend"
        self.write(
            f"connguard drill on {self.alias!r} ({vendor}, ENGINE {self.info.settings['ENGINE']})"
        )
        receivers = (signals.connection_replaced, signals.connection_recycled)
        for signal in receivers:
            signal.connect(self._on_replaced)
        try:
            self._connect(guard)
            kill = _faults.KILL_SQL[vendor] % _faults.session_id(wrapper)
            with self._step(f"end that session from a second connection ({kill})") as notes:
                ident = self._fault(_faults.kill, wrapper)
                notes.append(f"ok, the server closed session {ident}")
            if not self._query(guard, "after the kill"):
                self._reopen()
            with self._step(
                f"lower this session's idle limit ({_faults.EXPIRE_SQL[vendor]}) and wait until "
                "the server ends it"
            ) as notes:
                self._fault(_faults.expire, wrapper)
                notes.append("ok, the server closed it")
            self._query(guard, "after the idle timeout")
        finally:
            for signal in receivers:
                signal.disconnect(self._on_replaced)
            with contextlib.suppress(Exception):
                wrapper.close()
        self._verdict()

    def _fault(self, fault: Callable[[Any], Any], wrapper: Any) -> Any:
        try:
            return fault(wrapper)
        except _faults.FaultError as exc:
            raise CommandError(f"the drill stopped on {self.alias!r}: {exc}") from exc

    def _connect(self, guard: str) -> None:
        from django.db import DatabaseError

        settings = self.info.settings
        with self._step(f"open a connection {guard}") as notes:
            try:
                self.wrapper.ensure_connection()
                version = checks.server_version(self.wrapper)
            except DatabaseError as exc:
                where = f"{settings.get('HOST') or 'local socket'}:{settings.get('PORT') or ''}"
                raise CommandError(
                    f"cannot connect to {self.alias!r} ({where}): {_faults.first_line(exc)}"
                ) from exc
            notes.append(f"ok, session {_faults.session_id(self.wrapper)} on {version}")

    def _query(self, guard: str, when: str) -> bool:
        from django.db import DatabaseError

        self.replaced.clear()
        with self._step(f"run a query {guard} {when}") as notes:
            try:
                with self.wrapper.cursor() as cursor:
                    cursor.execute("SELECT 1")
                    cursor.fetchone()
            except DatabaseError as exc:
                self.failures.append(when)
                notes.append(f"FAILED with {_faults.first_line(exc)}: this is what your code gets")
                return False
            ident = _faults.session_id(self.wrapper)
            how = f"the guard replaced the connection ({', '.join(self.replaced)})"
            notes.append(f"ok, {how if self.replaced else 'no error'}; now session {ident}")
        return True

    def _reopen(self) -> None:
        """After a failure, connect again by hand so that the next fault can be tried."""
        with self._step("close the broken connection and open a new one by hand") as notes:
            with contextlib.suppress(Exception):
                self.wrapper.close()
            self.wrapper.ensure_connection()
            notes.append(f"ok, session {_faults.session_id(self.wrapper)}")

    def _verdict(self) -> None:
        if not self.failures:
            self.write(
                f"verdict: {self.alias!r} recovered from a server-side kill and from an idle "
                "timeout; no error reached the code that used it."
            )
            return
        if self.info.active:
            advice = "see the log of the connguard.backends logger"
        elif self.info.guarded:
            advice = "turn the guard on: remove OPTIONS['connguard']['enabled'] = False"
        else:
            advice = f"use ENGINE {checks.GUARDED_ENGINES[self.vendor]!r}"
        self.write(
            f"verdict: {self.alias!r} did not recover: the query {' and '.join(self.failures)} "
            f"failed; {advice}."
        )
        raise CommandError(
            f"the drill failed on {self.alias!r}: {len(self.failures)} of 2 disconnects reached "
            "the code as errors"
        )
