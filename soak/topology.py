"""Everything the soak's workers talk to: servers, middleboxes, the namespace, and the routes.

A route is one ``DATABASES`` alias: a vendor reached one way. Every worker
uses every route it is given, so a fault on one server reaches every worker.

``mysql_failover`` is the one route on servers of its own: a MariaDB primary
and its GTID replica (testbed.replication) behind a front proxy, as HAProxy or
a virtual IP would be, for the ``failover`` fault to promote the replica. Its
clients connect as ``app``, a user without SUPER, so that ``read_only`` binds
them (it does not bind the ``connguard`` user of the other MySQL routes).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from soak.middleboxes import HAProxy, PgBouncer
from soak.netns import Namespace
from testbed.replication import ReplicatedMariaDB
from testbed.servers import MariaDBServer, PostgreSQLServer, RedisServer

# The server's own idle limits, a little longer than the middleboxes' so that
# both kinds of idle close happen. MariaDB's is global (new sessions), PG's
# reaches existing sessions on reload.
SERVER_IDLE_TIMEOUT = 3

# The documented settings that bound a silently dropped connection: every
# blocking driver call on the blackholed routes gives up after about 3 s.
BLACKHOLE_OPTIONS = {
    "mysql": {"connect_timeout": 3, "read_timeout": 3, "write_timeout": 3},
    "postgresql": {
        "connect_timeout": 3,
        "tcp_user_timeout": 3000,
        "keepalives": 1,
        "keepalives_idle": 2,
        "keepalives_interval": 1,
        "keepalives_count": 2,
    },
}
# Not bounding a hang, but a failed connect during a restart should not wait long.
CONNECT_OPTIONS = {"mysql": {"connect_timeout": 5}, "postgresql": {"connect_timeout": 5}}

ALL_ROUTES = (
    "mysql_direct",
    "mysql_haproxy",
    "mysql_blackhole",
    "mysql_failover",
    "pg_direct",
    "pg_bouncer_session",
    "pg_bouncer_tx",
    "pg_blackhole",
)

TABLE = {
    "mysql": "CREATE TABLE soak_row (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
    "jkey VARCHAR(64) NOT NULL, worker VARCHAR(64) NOT NULL, KEY (jkey)) ENGINE=InnoDB",
    "postgresql": "CREATE TABLE soak_row (id BIGSERIAL PRIMARY KEY, "
    "jkey VARCHAR(64) NOT NULL, worker VARCHAR(64) NOT NULL); CREATE INDEX ON soak_row (jkey)",
}


# The route through the replication bed's front: the only one a MariaDB failover moves.
FAILOVER_ROUTE = "mysql_failover"


def vendor_of(route: str) -> str:
    return "mysql" if route.startswith("mysql") else "postgresql"


@dataclass
class Topology:
    routes: tuple[str, ...]
    base_dir: str
    mariadb: MariaDBServer
    postgresql: PostgreSQLServer
    redis: RedisServer
    haproxy: HAProxy | None = None
    pgbouncer: PgBouncer | None = None
    namespace: Namespace | None = None
    # The primary and replica behind FAILOVER_ROUTE, when that route runs.
    replicated: ReplicatedMariaDB | None = None
    # Where the namespace's forwarders listen, per vendor.
    forwarded: dict[str, tuple[str, int]] = field(default_factory=dict)

    def server(self, vendor: str) -> MariaDBServer | PostgreSQLServer:
        return self.mariadb if vendor == "mysql" else self.postgresql

    def vendors(self) -> set[str]:
        return {vendor_of(route) for route in self.routes}

    def middleboxes(self) -> list[HAProxy | PgBouncer]:
        return [box for box in (self.haproxy, self.pgbouncer) if box is not None]

    def failover_targets(self) -> list[str]:
        """The vendors a ``failover`` fault can demote: MariaDB through the
        replication bed, PostgreSQL on the soak's own server (simulated)."""
        targets = ["mysql"] if self.replicated is not None else []
        if "postgresql" in self.vendors():
            targets.append("postgresql")
        return targets

    def failover_routes(self, vendor: str) -> tuple[str, ...]:
        """The routes a failover of ``vendor`` moves: the bed's for MariaDB; every
        PostgreSQL route, since they all reach the one server."""
        if vendor == "mysql":
            return tuple(route for route in self.routes if route == FAILOVER_ROUTE)
        return tuple(route for route in self.routes if vendor_of(route) == "postgresql")

    def databases(self) -> dict[str, dict[str, Any]]:
        """``DATABASES`` for the workers: one guarded alias per route."""
        result: dict[str, dict[str, Any]] = {}
        for route in self.routes:
            vendor = vendor_of(route)
            entry = self.server(vendor).settings(CONN_MAX_AGE=None)
            options: dict[str, Any] = dict(CONNECT_OPTIONS[vendor])
            if route == FAILOVER_ROUTE and self.replicated:
                entry = self.replicated.settings(CONN_MAX_AGE=None)
            elif route == "mysql_haproxy" and self.haproxy:
                entry.update(PORT=str(self.haproxy.port))
            elif route.startswith("pg_bouncer") and self.pgbouncer:
                entry.update(self.pgbouncer.settings_for(route.removeprefix("pg_bouncer_")))
                if route == "pg_bouncer_tx":
                    # Required by Django under transaction pooling.
                    entry["DISABLE_SERVER_SIDE_CURSORS"] = True
            elif route.endswith("blackhole") and self.namespace:
                host, port = self.forwarded[vendor]
                entry.update(HOST=host, PORT=str(port))
                options = dict(BLACKHOLE_OPTIONS[vendor])
            entry["OPTIONS"] = options
            result[route] = entry
        # Django wants a "default"; the jobs name their route, so it stays unused.
        result["default"] = result[self.routes[0]]
        return result

    def set_idle_limits(self, vendor: str) -> None:
        """The servers' idle limits; MariaDB forgets its global on a restart."""
        if vendor == "mysql":
            nodes = self.replicated.nodes if self.replicated else ()
            for server in (self.mariadb, *nodes):
                server.sql(f"SET GLOBAL wait_timeout = {SERVER_IDLE_TIMEOUT}")
        else:
            self.postgresql.sql(f"ALTER SYSTEM SET idle_session_timeout = '{SERVER_IDLE_TIMEOUT}s'")
            self.postgresql.sql("SELECT pg_reload_conf()")

    def ensure_running(self) -> None:
        """Start whatever a failed fault left stopped, so that reconciliation can read."""
        nodes = self.replicated.nodes if self.replicated else ()
        for process in (self.mariadb, self.postgresql, *self.middleboxes(), *nodes):
            if process.process is None or process.process.poll() is not None:
                process.start()
                if process is self.mariadb or process in nodes:
                    self.set_idle_limits("mysql")

    def stop(self) -> None:
        if self.namespace:
            self.namespace.delete()
        if self.replicated:
            with contextlib.suppress(Exception):
                self.replicated.stop()
        for process in (*self.middleboxes(), self.mariadb, self.postgresql, self.redis):
            with contextlib.suppress(Exception):
                process.stop()
        with contextlib.suppress(OSError):
            os.rmdir(self.base_dir)


def start(routes: tuple[str, ...]) -> Topology:
    """Start what ``routes`` need; on failure, stop what was started."""
    base_dir = tempfile.mkdtemp(prefix="connguard-soak-")
    os.chmod(base_dir, 0o755)  # the servers' users make their own dirs in it
    topology = Topology(
        routes,
        base_dir,
        MariaDBServer(base_dir),
        PostgreSQLServer(base_dir),
        RedisServer(base_dir),
    )
    try:
        for process in (topology.mariadb, topology.postgresql, topology.redis):
            process.start()
        for vendor in ("mysql", "postgresql"):
            server = topology.server(vendor)
            if vendor == "mysql":
                server.sql(f"USE {server.database}; {TABLE[vendor]}")
            else:
                server.sql(TABLE[vendor])
        if FAILOVER_ROUTE in routes:
            # The table goes through the binary log, so that the replica has it too.
            bed = topology.replicated = ReplicatedMariaDB(base_dir)
            bed.start()
            bed.sql("primary", f"USE {bed.database}; {TABLE['mysql']}")
            bed.wait_caught_up()
        for vendor in ("mysql", "postgresql"):
            topology.set_idle_limits(vendor)
        if "mysql_haproxy" in routes:
            topology.haproxy = HAProxy(topology.mariadb, base_dir)
            topology.haproxy.start()
        if any(route.startswith("pg_bouncer") for route in routes):
            topology.pgbouncer = PgBouncer(topology.postgresql, base_dir)
            topology.pgbouncer.start()
        if any(route.endswith("blackhole") for route in routes):
            topology.namespace = Namespace()
            forward = topology.namespace.forward
            topology.forwarded["mysql"] = forward(3306, topology.mariadb.socket)
            pg = topology.postgresql
            topology.forwarded["postgresql"] = forward(5432, str(pg.dir / f".s.PGSQL.{pg.port}"))
    except BaseException:
        topology.stop()
        raise
    return topology
