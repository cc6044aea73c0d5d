"""A worker that writes keyed rows without a pause, in its own thread, through Django.

Each row's note is ``<prefix>-<n>``; the writer records which writes were
acknowledged and which raised, and when, so that a test can check that every
acknowledged row is on the new primary exactly once, and measure the time from
a demotion to the first acknowledged write after it. Waits are on conditions
the writer signals, never on the clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from django.db import DatabaseError, connections


class Writer:
    def __init__(self, settings_dict: Mapping[str, Any], prefix: str, table: str) -> None:
        self.settings_dict = connections.configure_settings({"default": dict(settings_dict)})[
            "default"
        ]
        self.prefix, self.table = prefix, table
        self.acknowledged: list[tuple[str, float]] = []  # (note, when)
        self.failed: list[tuple[str, float, BaseException]] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"writer-{prefix}", daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def _run(self) -> None:
        from django.db.utils import load_backend

        wrapper = load_backend(self.settings_dict["ENGINE"]).DatabaseWrapper(
            self.settings_dict, f"writer-{self.prefix}"
        )
        try:
            for n in range(1_000_000):
                if self._stop.is_set():
                    return
                note = f"{self.prefix}-{n}"
                try:
                    with wrapper.cursor() as cursor:
                        cursor.execute(f"INSERT INTO {self.table} (note) VALUES (%s)", [note])
                except DatabaseError as exc:
                    self._record(self.failed, (note, time.monotonic(), exc))
                else:
                    self._record(self.acknowledged, (note, time.monotonic()))
        finally:
            wrapper.close()

    def _record(self, into: list[Any], item: Any) -> None:
        with self._changed:
            into.append(item)
            self._changed.notify_all()

    def wait(self, *, acknowledged_after: float = 0.0, count: int = 1, failed: bool = False,
             timeout: float = 120.0) -> None:  # fmt: skip
        """Until ``count`` writes after ``acknowledged_after`` were acknowledged (or failed)."""

        def enough() -> bool:
            seen = self.failed if failed else self.acknowledged
            return sum(1 for item in seen if item[1] >= acknowledged_after) >= count

        with self._changed:
            if not self._changed.wait_for(enough, timeout):
                raise AssertionError(
                    f"writer {self.prefix}: {count} {'failed' if failed else 'acknowledged'} "
                    f"writes did not come within {timeout} s; failures: {self.failed[-3:]}"
                )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def first_after(self, moment: float) -> float:
        """Seconds from ``moment`` to the first acknowledged write after it."""
        return min(when for _, when in self.acknowledged if when >= moment) - moment

    def notes(self) -> list[str]:
        return [note for note, _ in self.acknowledged]
