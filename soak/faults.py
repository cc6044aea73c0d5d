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
failover    the primary turns read-only under its open connections, for
            FAILOVER_HOLD s no node takes writes, then one does: MariaDB's
            replica is promoted behind the front (and the old primary rejoins
            as its replica, so the next failover promotes it back); PostgreSQL
            is simulated on the soak's own server, default_transaction_read_only
            on (open sessions refuse writes, new ones start read-only), then off
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from soak.middleboxes import IDLE_TIMEOUT
from soak.topology import FAILOVER_ROUTE, SERVER_IDLE_TIMEOUT, Topology, vendor_of
from testbed.replication import ReplicatedMariaDB
from testbed.servers import POLL_INTERVAL, PostgreSQLServer, ServerError

KINDS = ("kill", "restart", "idle", "middlebox", "blackhole", "failover")
BLACKHOLE_SECONDS = 6.0
# The failover window: from the demotion, this long with no writable node (the
# time a failover manager takes to notice and promote), then a node takes writes.
FAILOVER_HOLD = 1.5
# How long the server may take to show a setting it was told to reload.
RELOAD_DEADLINE = 10.0
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
    # failover: time.time() when the server showed the demotion in effect; jobs
    # that start from then on cannot have written before it (see summary.py).
    effective: float = 0.0
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
    # The failover targets still due in this cycle: each once, in a random order,
    # so that a short run demotes both vendors.
    _failover_due: list[str] = field(default_factory=list)

    def applicable(self) -> list[str]:
        routes = self.topology.routes
        has = {
            "kill": True,
            "restart": True,
            "idle": True,
            "middlebox": bool(self.topology.middleboxes()),
            "blackhole": any(r.endswith("blackhole") for r in routes),
            "failover": bool(self.topology.failover_targets()),
        }
        return [kind for kind in self.kinds if has[kind]]

    def run(self, until: float) -> None:
        """Inject faults until ``until`` (time.monotonic()) or ``stop()``."""
        kinds = self.applicable()
        if not kinds:  # none of the kinds asked for fits these routes
            self._stop.wait(max(0.0, until - time.monotonic()))
            return
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
                    # The replication bed's servers are not restarted.
                    fault.routes = tuple(r for r in fault.routes if r != FAILOVER_ROUTE)
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
            elif kind == "failover":
                if not self._failover_due:
                    self._failover_due = topology.failover_targets()
                    self.rng.shuffle(self._failover_due)
                vendor = self._failover_due.pop()
                fault.target, fault.routes = vendor, topology.failover_routes(vendor)
                if vendor == "mysql":
                    assert topology.replicated is not None
                    promote(topology.replicated, fault, self._stop.wait)
                else:
                    read_only_window(topology.postgresql, fault, self._stop.wait)
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
    if vendor == "mysql" and topology.replicated is not None:
        # The failover route's sessions, on both nodes: the old primary may still
        # hold some that have not been used since the last failover.
        bed = topology.replicated
        for node in bed.nodes:
            listed = node.sql(
                "SELECT id FROM information_schema.PROCESSLIST "
                f"WHERE user = '{bed.app_user}' AND command <> 'Killed'"
            )
            node.kill(*(int(ident) for ident in listed.split()), missing_ok=True, wait=False)


def promote(bed: ReplicatedMariaDB, fault: Fault, wait: Callable[[float], object]) -> None:
    """A MariaDB failover: the primary turns read-only under its open connections
    (the front still sends new ones to it), FAILOVER_HOLD s later the replica is
    promoted and the front moves to it; then the old primary rejoins as its
    replica, so that the next failover can promote it back."""
    old = bed.primary
    fault.injected = time.time()
    old.sql("SET GLOBAL read_only = ON")  # returns once in effect
    fault.effective = time.time()
    try:
        wait(FAILOVER_HOLD)
    finally:
        bed.promote()  # read_only again (already on), the replica's catch-up, the move
        bed.rejoin_old_primary_as_replica()


def read_only_window(
    server: PostgreSQLServer, fault: Fault, wait: Callable[[float], object]
) -> None:
    """A PostgreSQL failover, simulated on the one server: default_transaction_read_only
    on, so open sessions refuse writes (25006) and report the change, new ones start
    read-only; FAILOVER_HOLD s later off again, as if a replica had taken over."""
    fault.injected = time.time()
    server.sql("ALTER SYSTEM SET default_transaction_read_only = on")
    try:
        server.sql("SELECT pg_reload_conf()")
        wait_setting(server, "default_transaction_read_only", "on")
        fault.effective = time.time()
        wait(FAILOVER_HOLD)
    finally:
        server.sql("ALTER SYSTEM RESET default_transaction_read_only")
        server.sql("SELECT pg_reload_conf()")
        wait_setting(server, "default_transaction_read_only", "off")


def wait_setting(server: PostgreSQLServer, name: str, value: str) -> None:
    """Wait until a new session shows the reloaded setting: the postmaster has read
    the file then, and signalled every backend to read it before its next command."""
    deadline = time.monotonic() + RELOAD_DEADLINE
    while (shown := server.sql(f"SHOW {name}").strip()) != value:
        if time.monotonic() > deadline:
            raise ServerError(f"{name} is still {shown!r}, not {value!r}, after a reload")
        time.sleep(POLL_INTERVAL)
