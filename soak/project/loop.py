"""The hand-written workers: ``python -m soak.project.loop plain|threads NAME``.

Each pops jobs from its own Redis list until it reads the "stop" sentinel.
``plain`` runs them one by one in the main thread; ``threads`` hands them to
``connguard.ThreadPoolExecutor`` (four threads, each with its own connections).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import django

django.setup()

import connguard  # noqa: E402
from soak.project import work  # noqa: E402
from soak.project.queues import STOP, queue_name  # noqa: E402


def jobs(worker: str) -> Iterator[dict[str, Any]]:
    client = work._redis(os.getpid())
    parent = os.getppid()
    # Ends on the sentinel, or when the soak that started it is gone.
    while os.getppid() == parent:
        item = client.blpop([queue_name(worker)], timeout=1)
        if item is None:
            continue
        if item[1] == STOP.encode():
            return
        yield json.loads(item[1])


def main(kind: str, worker: str) -> None:
    if kind == "plain":
        for job in jobs(worker):
            work.run_job(job, worker)
        return
    with connguard.ThreadPoolExecutor(max_workers=4) as pool:
        for job in jobs(worker):
            pool.submit(work.execute, job, worker)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
