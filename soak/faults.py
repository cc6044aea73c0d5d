"""The fault injector: random faults, one at a time, on the run's own servers and boxes.

Kinds (each round tries every kind once, in a random order, on a random
target, with a random pause between faults):

kill        the server terminates every client session (KILL / pg_terminate_backend)
restart     a server restarts (stop, then start on the same port and data)
idle        the producer pauses longer than every idle limit, so the servers'
            idle timeouts and the middleboxes' idle drops close connections under
            the workers; it takes effect when jobs resume, and is timed from then
middlebox   HAProxy or pgbouncer is hard-stopped and started again
blackhole   the namespace silently drops every packet for BLACKHOLE_SECONDS
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from soak.middleboxes import IDLE_TIMEOUT
from soak.topology import SERVER_IDLE_TIMEOUT, Topology, vendor_of

KINDS = ("kill", "restart", "idle", "middlebox", "blackhole")
BLACKHOLE_SECONDS = 6.0
IDLE_PAUSE = max(IDLE_TIMEOUT, SERVER_IDLE_TIMEOUT) + 1.5
GAP = (2.0, 5.0)  # seconds between two faults, at random
# No fault starts in the last seconds of the run, so that the last one's
# recovery is measured while jobs still flow, not against the final round.
QUIET_TAIL = 5.0


@dataclass
class Fault:
    kind: str
    target: str
    routes: tuple[str, ...]  # the routes it breaks
    injected: float = 0.0  # time.time() when it took effect
    ended: float = 0.0
    error: str = ""  # the injection itself failed (not counted as applied)


@dataclass
class Injector:
    topology: Topology
    kinds: tuple[str, ...]
    rng: random.Random
    pause: Callable[[float], None]  # the producer's: stop sending jobs for N s
    log: Callable[[str], None] = print
    gap: tuple[float, float] = GAP
    faults: list[Fault] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def applicable(self) -> list[str]:
        routes = self.topology.routes
        has = {
            "kill": True,
            "restart": True,
            "idle": True,
            "middlebox": bool(self.topology.middleboxes()),
            "blackhole": any(r.endswith("blackhole") for r in routes),
        }
        return [kind for kind in self.kinds if has[kind]]

    def run(self, until: float) -> None:
        """Inject faults until ``until`` (time.monotonic()) or ``stop()``."""
        kinds = self.applicable()
        while not self._stop.is_set():
            round_ = list(kinds)
            self.rng.shuffle(round_)
            for kind in round_:
                if self._stop.wait(self.rng.uniform(*self.gap)):
                    return
                if time.monotonic() >= until - QUIET_TAIL:
                    return
                fault = self._inject(kind)
                self.faults.append(fault)
                took = fault.ended - fault.injected
                self.log(f"soak: fault {kind} {fault.target} ({took:.1f} s) {fault.error}")

    def stop(self) -> None:
        self._stop.set()

    def _routes(self, test: Callable[[str], bool]) -> tuple[str, ...]:
        return tuple(route for route in self.topology.routes if test(route))

    def _inject(self, kind: str) -> Fault:
        topology = self.topology
        fault = Fault(kind, "all", topology.routes)
        try:
            if kind in ("kill", "restart"):
                vendor = self.rng.choice(sorted(topology.vendors()))
                fault.target, fault.routes = vendor, self._routes(lambda r: vendor_of(r) == vendor)
                fault.injected = time.time()
                if kind == "kill":
                    kill_sessions(topology, vendor)
                else:
                    topology.server(vendor).restart()
                    topology.set_idle_limits(vendor)
            elif kind == "idle":
                self.pause(IDLE_PAUSE)
                self._stop.wait(IDLE_PAUSE)
                fault.injected = time.time()
            elif kind == "middlebox":
                box = self.rng.choice(topology.middleboxes())
                prefix = "mysql_haproxy" if box is topology.haproxy else "pg_bouncer"
                fault.target, fault.routes = box.name, self._routes(lambda r: r.startswith(prefix))
                fault.injected = time.time()
                box.restart()
            else:
                assert topology.namespace is not None
                fault.target = "namespace"
                fault.routes = self._routes(lambda r: r.endswith("blackhole"))
                fault.injected = time.time()
                topology.namespace.blackhole(True)
                try:
                    self._stop.wait(BLACKHOLE_SECONDS)
                finally:
                    topology.namespace.blackhole(False)
        except Exception as exc:
            fault.error = f"{type(exc).__name__}: {exc}"[:300]
        fault.ended = time.time()
        return fault


def kill_sessions(topology: Topology, vendor: str) -> None:
    """Terminate every client session on the server, as an operator or a failover would."""
    server = topology.server(vendor)
    if vendor == "postgresql":
        listed = server.sql(
            "SELECT pid FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
    else:
        listed = server.sql(
            "SELECT id FROM information_schema.PROCESSLIST "
            f"WHERE user = '{server.user}' AND command <> 'Killed'"
        )
    # A session may end by itself between the listing and the kill: fine.
    server.kill(*(int(ident) for ident in listed.split()), missing_ok=True, wait=False)
