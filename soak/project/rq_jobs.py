"""The soak's RQ job; the producer enqueues it by name, without importing Django."""

from __future__ import annotations

from typing import Any

from soak.project import work


def run(job: dict[str, Any], worker: str) -> None:
    work.execute(job, worker)
