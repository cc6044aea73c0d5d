"""Two MariaDB servers in GTID replication behind one front address: a failover bed.

``ReplicatedMariaDB`` starts a primary and a read-only replica (both
``testbed.servers.MariaDBServer`` with a binary log, ROW events and GTIDs in
strict mode) and a ``testbed.proxy.Proxy`` in front of the primary, as HAProxy
or a virtual IP would be. ``promote()`` is a scripted switchover: the primary
goes read-only, the replica applies all it wrote, stops replicating and becomes
writable, and the front sends new connections to it. Connections already open
through the front stay on the old primary, where a plain user's writes now fail
with error 1290 (ER_OPTION_PREVENTS_STATEMENT, "...running with the --read-only
option..."): what a worker's idle connections meet after a failover.

Clients connect as ``app``, a plain user: read_only does not stop users with
SUPER or READ ONLY ADMIN, so neither root (``sql()``) nor the ``connguard`` user
that MariaDBServer creates would see the demotion.

    with ReplicatedMariaDB() as bed:
        DATABASES = {"default": bed.settings()}
        ...
        bed.promote()                       # the replica is the primary now
        bed.rejoin_old_primary_as_replica() # so that promote() can switch back
"""

from __future__ import annotations

import time
from types import TracebackType

from testbed.proxy import Proxy
from testbed.servers import POLL_INTERVAL, MariaDBServer, ServerError

# MariaDB's error for a write on a server that is read-only to this user.
ER_OPTION_PREVENTS_STATEMENT = 1290


class ReplicationNode(MariaDBServer):
    """A MariaDBServer with a binary log and GTIDs, fit to be a primary or a replica."""

    # Its directory is /tmp/connguard-mariadb-repl-*: told apart from the
    # single servers of other test runs on the same machine.
    name = "mariadb-repl"

    def __init__(
        self, server_id: int, *, read_only: bool = False, base_dir: str | None = None
    ) -> None:
        self.server_id = server_id
        # What the server starts with; promote() keeps it up to date, so that a
        # restart() comes back in the role the node has now.
        self.read_only = read_only
        self._unlogged = False
        super().__init__(base_dir)

    def _start_args(self) -> list[str]:
        args = [arg for arg in super()._start_args() if arg != "--skip-log-bin"]
        return [
            *args,
            f"--server-id={self.server_id}",
            "--log-bin=binlog",  # relative: in the data directory
            "--relay-log=relay-bin",
            "--binlog-format=ROW",
            "--log-slave-updates=ON",
            "--gtid-strict-mode=ON",
            f"--read-only={'ON' if self.read_only else 'OFF'}",
        ]

    def start(self, timeout: float = 60.0) -> None:
        # MariaDBServer.start() makes its database and user on each server. In
        # the binary log, those would be GTIDs of this server's own that the
        # other has never seen, and strict mode would stop replication on them.
        self._unlogged = True
        try:
            super().start(timeout)
        finally:
            self._unlogged = False

    def _client_args(self) -> list[str]:
        args = super()._client_args()
        if self._unlogged:
            args.append("--init-command=SET SESSION sql_log_bin = 0")
        return args

    def gtid_binlog_pos(self) -> str:
        """The GTID position of everything in this server's binary log."""
        return self.sql("SELECT @@GLOBAL.gtid_binlog_pos").strip()

    def slave_status(self) -> dict[str, str]:
        """SHOW SLAVE STATUS as column -> value; empty if no primary is set."""
        # Without -N: the header line names the columns of the value line.
        args = [arg for arg in self._client_args() if arg != "-N"]
        lines = self._run([*args, "-e", "SHOW SLAVE STATUS"]).splitlines()
        if len(lines) < 2:
            return {}
        return dict(zip(lines[0].split("\t"), lines[1].split("\t"), strict=False))


class ReplicatedMariaDB:
    """A primary, a replica of it, and a front proxy that follows ``promote()``."""

    database = MariaDBServer.database
    engine = MariaDBServer.engine
    app_user = "app"
    app_password = "app-secret"
    replication_user = "repl"
    replication_password = "repl-secret"

    def __init__(self, base_dir: str | None = None, *, timeout: float = 30.0) -> None:
        self.base_dir = base_dir
        self.timeout = timeout  # for each wait on replication
        self.front: Proxy | None = None
        self._primary: ReplicationNode | None = None
        self._replica: ReplicationNode | None = None
        # False between promote() and rejoin_old_primary_as_replica(): the old
        # primary is then the replica, but nothing replicates to it.
        self.replicating = False

    # ##### Roles and addresses #####

    @property
    def primary(self) -> ReplicationNode:
        if self._primary is None:
            raise ServerError("the bed is not started")
        return self._primary

    @property
    def replica(self) -> ReplicationNode:
        if self._replica is None:
            raise ServerError("the bed is not started")
        return self._replica

    @property
    def nodes(self) -> tuple[ReplicationNode, ...]:
        return tuple(node for node in (self._primary, self._replica) if node is not None)

    def _front(self) -> Proxy:
        if self.front is None:
            raise ServerError("the bed is not started")
        return self.front

    @property
    def front_host(self) -> str:
        return self._front().host

    @property
    def front_port(self) -> int:
        return self._front().port

    def settings(self, engine: str | None = None, **extra: object) -> dict[str, object]:
        """A ``DATABASES`` entry for the app user through the front, guarded unless
        ``engine`` says otherwise."""
        return {
            "ENGINE": engine or self.engine,
            "NAME": self.database,
            "USER": self.app_user,
            "PASSWORD": self.app_password,
            "HOST": self.front_host,
            "PORT": str(self.front_port),
            **extra,
        }

    def connect_kwargs(self) -> dict[str, object]:
        """Keyword arguments for PyMySQL's and mysqlclient's connect(), as the app user
        through the front."""
        return {
            "host": self.front_host,
            "port": self.front_port,
            "user": self.app_user,
            "password": self.app_password,
            "database": self.database,
        }

    def sql(self, server: ReplicationNode | str, statements: str) -> str:
        """Run SQL as root on ``server``: a node, or "primary" / "replica".

        Root is not held back by read_only: use the app user to see a demotion.
        """
        if isinstance(server, str):
            if server not in ("primary", "replica"):
                raise ValueError(f"server must be 'primary' or 'replica', not {server!r}")
            server = self.primary if server == "primary" else self.replica
        return server.sql(statements)

    # ##### Life cycle #####

    def start(self) -> ReplicatedMariaDB:
        try:
            self._primary = ReplicationNode(1, base_dir=self.base_dir)
            self._replica = ReplicationNode(2, read_only=True, base_dir=self.base_dir)
            # Both from this thread: their pdeathsig follows the thread that started them.
            self._primary.start()
            self._replica.start()
            self.front = Proxy(self._primary.host, self._primary.port)
            # In the primary's binary log, so that replication makes the users on
            # the replica too (and the replication user is there for a switch back).
            self._primary.sql(self._users_sql())
            self._replicate(self._replica, source=self._primary)
            self.wait_caught_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _users_sql(self) -> str:
        repl = f"'{self.replication_user}'@'127.0.0.1'"
        statements = [
            f"CREATE USER {repl} IDENTIFIED BY '{self.replication_password}'",
            f"GRANT REPLICATION SLAVE ON *.* TO {repl}",
        ]
        # Both hosts, as a DBA would: '%' alone would lose to a more specific
        # anonymous ''@'127.0.0.1', if there were one.
        for host in ("%", "127.0.0.1"):
            app = f"'{self.app_user}'@'{host}'"
            statements += [
                f"CREATE USER {app} IDENTIFIED BY '{self.app_password}'",
                # No SUPER, no READ ONLY ADMIN: read_only must apply to this user.
                f"GRANT ALL ON {self.database}.* TO {app}",
            ]
        return "".join(f"{statement};" for statement in statements)

    def stop(self) -> None:
        """Stop the proxy and both servers and remove their directories; every
        step is tried even if an earlier one fails."""
        front, self.front = self.front, None
        nodes = [node for node in (self._replica, self._primary) if node is not None]
        self._primary = self._replica = None
        self.replicating = False
        errors: list[BaseException] = []
        if front is not None:
            try:
                front.close()
            except Exception as exc:
                errors.append(exc)
        for node in nodes:
            try:
                node.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> ReplicatedMariaDB:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ##### Replication #####

    def _replicate(self, replica: ReplicationNode, *, source: ReplicationNode) -> None:
        """Make ``replica`` replicate from ``source``, from where its own binary log ends."""
        # With log_slave_updates, a node's binary log holds all it has applied,
        # so that is where it goes on: an old primary has no gtid_slave_pos of
        # its own, and slave_pos from nothing would replay all of history.
        replica.sql(
            "SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos;"
            f"CHANGE MASTER TO MASTER_HOST='{source.host}', MASTER_PORT={source.port}, "
            f"MASTER_USER='{self.replication_user}', "
            f"MASTER_PASSWORD='{self.replication_password}', "
            # Retry a failed connect after 1 s, not the default 60 s.
            "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;"
            "START SLAVE;"
        )
        self.replicating = True

    def wait_caught_up(self, timeout: float | None = None) -> None:
        """Wait until the replica has applied everything in the primary's binary log."""
        if not self.replicating:
            raise ServerError(
                "the replica does not replicate; call rejoin_old_primary_as_replica() first"
            )
        timeout = self.timeout if timeout is None else timeout
        position = self.primary.gtid_binlog_pos()
        deadline = time.monotonic() + timeout
        while True:
            # The server's own wait for the position, in short slices so that a
            # replication thread that stopped on an error fails the wait at once.
            remaining = max(deadline - time.monotonic(), POLL_INTERVAL)
            slice_ = min(remaining, 1.0)
            done = self.replica.sql(f"SELECT MASTER_GTID_WAIT('{position}', {slice_:.3f})")
            if done.strip() == "0":
                return
            status = self.replica.slave_status()
            stopped = [
                thread
                for thread in ("Slave_IO_Running", "Slave_SQL_Running")
                if status.get(thread) == "No"
            ]
            if stopped or time.monotonic() >= deadline:
                why = f"{' and '.join(stopped)} stopped" if stopped else f"not in {timeout}s"
                raise ServerError(
                    f"replica {self.replica.server_id} did not reach {position!r} ({why}): "
                    f"{_status_summary(status)}"
                )

    def promote(self) -> ReplicationNode:
        """Switch over to the replica; return it, the new primary.

        The old primary stays up, read-only, with its sessions open; the front
        sends new connections to the new primary. Afterwards ``primary`` and
        ``replica`` are the new roles, and nothing replicates until
        ``rejoin_old_primary_as_replica()``.
        """
        old, new = self.primary, self.replica
        if not self.replicating:
            raise ServerError(
                "the replica does not replicate, so it may lack writes; "
                "call rejoin_old_primary_as_replica() first"
            )
        # Open sessions stay, but their (non-SUPER) writes now fail: the binary
        # log position read next is the last one the old primary will have.
        old.sql("SET GLOBAL read_only = ON")
        old.read_only = True
        self.wait_caught_up()
        new.sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF")
        new.read_only = False
        self.replicating = False
        self._front().retarget(new.host, new.port)
        self._primary, self._replica = new, old
        return new

    def rejoin_old_primary_as_replica(self) -> ReplicationNode:
        """Make the replica (the old primary, after ``promote()``) replicate from the
        primary, and wait until it has caught up; return it. It stays read-only."""
        if self.replicating:
            raise ServerError("the replica already replicates from the primary")
        self._replicate(self.replica, source=self.primary)
        self.wait_caught_up()
        return self.replica


def _status_summary(status: dict[str, str]) -> str:
    if not status:
        return "no replication configured"
    keys = ("Slave_IO_Running", "Slave_SQL_Running", "Last_IO_Error", "Last_SQL_Error",
            "Gtid_IO_Pos")  # fmt: skip
    return ", ".join(f"{key}={status.get(key, '?')!r}" for key in keys)
