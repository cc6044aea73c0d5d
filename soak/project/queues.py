"""Names the producer and the workers share; importable without Django."""

from __future__ import annotations

REPORTS = "soak:reports"  # every job's one report, as JSON
STOP = "stop"  # ends a hand-written loop


def queue_name(worker: str) -> str:
    return f"soak:queue:{worker}"
