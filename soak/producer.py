"""The producer: sends the stream of jobs, collects the reports, pauses on request."""

from __future__ import annotations

import json
import random
import time

import redis

from soak.ledger import Ledger
from soak.project.queues import REPORTS
from soak.workers import WorkerProcess

# Jobs per second per worker, at most: a steady stream that keeps a 2-core CI
# machine responsive, so that timings measure the guard and not the machine.
RATE = 25.0


class Producer:
    def __init__(
        self,
        workers: list[WorkerProcess],
        routes: tuple[str, ...],
        rng: random.Random,
        client: redis.Redis,
    ) -> None:
        self.workers = workers
        self.routes = routes
        self.rng = rng
        self.client = client
        self.ledger = Ledger()
        self.paused_until = 0.0
        self._count = 0
        self._next_send = {worker.name: 0.0 for worker in workers}
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def pause(self, seconds: float) -> None:
        self.paused_until = time.monotonic() + seconds

    def send(self, worker: WorkerProcess, route: str) -> str:
        self._count += 1
        key = f"{worker.name}-{self._count}"
        job = {"key": key, "route": route, "sent": time.time()}
        self.ledger.send({**job, "worker": worker.name})
        worker.enqueue(job)
        return key

    def collect(self) -> int:
        items: list[bytes] = self.client.lpop(REPORTS, 500) or []  # type: ignore[assignment]
        for item in items:
            self.ledger.receive(json.loads(item))
        return len(items)

    def run(self, until: float) -> None:
        """Keep every worker supplied until ``until`` (time.monotonic())."""
        while (now := time.monotonic()) < until and not self._stop:
            if now >= self.paused_until:
                for worker in self.workers:
                    if (
                        now >= self._next_send[worker.name]
                        and self.ledger.in_flight(worker.name) < worker.limit
                    ):
                        self.send(worker, self.rng.choice(self.routes))
                        self._next_send[worker.name] = now + 1 / RATE
            if not self.collect():
                time.sleep(0.01)

    def round(self, deadline: float) -> list[str]:
        """One job per worker per route; wait for their reports. Returns their keys."""
        keys = [self.send(worker, route) for worker in self.workers for route in self.routes]
        self.drain(deadline)
        return keys

    def drain(self, deadline: float) -> None:
        """Collect until every job sent has reported, or ``deadline`` passes."""
        end = time.monotonic() + deadline
        while self.ledger.missing() and time.monotonic() < end:
            if not self.collect():
                time.sleep(0.05)
