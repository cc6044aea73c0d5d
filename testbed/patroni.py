"""A real PostgreSQL failover cluster on loopback: etcd, two Patroni nodes and HAProxy.

The production layout, shrunk: one etcd member (the DCS), two Patroni nodes
running PostgreSQL 15 with streaming replication, and HAProxy in front with one
frontend port that routes to whichever node Patroni's REST API reports as the
primary (``GET /primary``). Everything listens on free ports on 127.0.0.1 and
keeps its data in one throwaway directory that ``stop()`` removes. As in
testbed.servers, the processes run as the ``postgres`` system user when the
caller is root (neither PostgreSQL nor Patroni agrees to run as root).

Timings are short (ttl 10, loop_wait 1, retry_timeout 5; HAProxy checks every
500 ms) so that a switchover or a failover is over in seconds. Every wait polls
for the event itself (what Patroni, PostgreSQL or HAProxy reports), never for a
guessed time.

    with PatroniCluster() as cluster:
        DATABASES = {"default": cluster.settings("connguard.db.backends.postgresql")}
        old = cluster.leader()
        new = cluster.switchover()      # planned: old leader demoted, rejoins as replica
        newer = cluster.kill_leader_postmaster()   # unplanned: SIGKILL, the replica is promoted
        cluster.make_read_only_keeping_sessions(newer)  # a "demoted" node that keeps its sessions
        cluster.make_writable(newer)

Debian packages: patroni (3.0), etcd-server (3.4), haproxy, postgresql (15).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from testbed.servers import POLL_INTERVAL, ServerError, _find_in, _Server, free_port

T = TypeVar("T")

# Patroni's superuser; clients (Django, psql) log in with this password over TCP.
USER = "postgres"
PASSWORD = "connguard"
DATABASE = "connguard"
REPLICATION_USER = "replicator"
REPLICATION_PASSWORD = "replicator"
ENGINE = "connguard.db.backends.postgresql"
# urllib would honour http_proxy for 127.0.0.1 too; the REST APIs are local.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# What a REST API that is starting, stopping or dead gives (URLError is an OSError),
# and an answer that is not JSON.
_NO_ANSWER = (OSError, http.client.HTTPException, ValueError)


def _require(program: str) -> str:
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")
    if not found:
        raise ServerError(
            f"{program} not found; install the Debian packages patroni, etcd-server and "
            "haproxy (scripts/bootstrap does)"
        )
    return found


def _http(url: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> tuple[int, str]:
    """GET (or POST a JSON body to) a local URL; return the status and the body text."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    try:
        with _HTTP.open(request, timeout=timeout) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read().decode(errors="replace")


def _postgres_bindir() -> str:
    """PostgreSQL 15's binaries (Patroni 3.0 knows no newer), else as testbed.servers picks."""
    preferred = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    preferred = [d for d in preferred if "/15/" in d] + preferred
    if os.environ.get("CONNGUARD_PG_BINDIR"):
        preferred.insert(0, os.environ["CONNGUARD_PG_BINDIR"])
    return os.path.dirname(_find_in(preferred, "postgres"))


def _wait(
    what: str, check: Callable[[], T | None], timeout: float, logs: Callable[[], str] | None = None
) -> T:
    """Poll ``check()`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = f"\n{logs()}" if logs else ""
            raise ServerError(f"{what}: not after {timeout}s{tail}")
        time.sleep(POLL_INTERVAL * 5)


class _Etcd(_Server):
    run_as = "postgres"
    name = "etcd"

    def __init__(self, base_dir: str, client_port: int, peer_port: int) -> None:
        super().__init__(base_dir)
        self.port = client_port
        self.peer_port = peer_port
        self.etcd = _require("etcd")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _start_args(self) -> list[str]:
        peer = f"http://{self.host}:{self.peer_port}"
        return [
            self.etcd,
            "--name=etcd0",
            f"--data-dir={self.dir / 'data'}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=etcd0={peer}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token=connguard-{self.dir.name}",
            "--logger=zap",
            "--log-outputs=stderr",
        ]

    def _ready(self) -> bool:
        try:
            status, body = _http(f"{self.url}/health", timeout=1)
            return status == 200 and json.loads(body).get("health") == "true"
        except _NO_ANSWER:
            return False


class _Node(_Server):
    """One Patroni process; it runs (and restarts, rewinds, promotes) its own postmaster."""

    run_as = "postgres"
    # The parent-death signal too: if the test run dies, Patroni stops its PostgreSQL.
    stop_signal = signal.SIGTERM

    def __init__(self, base_dir: str, name: str, pg_port: int, api_port: int) -> None:
        self.name = name
        super().__init__(base_dir)
        self.port = pg_port
        self.api_port = api_port
        self.patroni = _require("patroni")
        self.data = self.dir / "data"
        self.config = self.dir / "patroni.yml"

    @property
    def api(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    def _start_args(self) -> list[str]:
        return [self.patroni, str(self.config)]

    def _ready(self) -> bool:
        # The REST API is up (503 too: PostgreSQL may still be bootstrapping).
        try:
            _http(f"{self.api}/patroni", timeout=1)
        except _NO_ANSWER:
            return False
        return True

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid, from its pid file (checked against /proc)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except (OSError, ValueError):
            return None
        # Not a stale pid file whose number another process has since taken.
        return pid if cwd == str(self.data) else None

    def kill_patroni(self) -> None:
        """SIGKILL Patroni itself, so that it takes no more decisions (its postgres stays)."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait()


class _HAProxy(_Server):
    run_as = "postgres"
    name = "haproxy"

    def __init__(
        self, base_dir: str, port: int, nodes: list[_Node], shutdown_sessions: bool
    ) -> None:
        super().__init__(base_dir)
        self.port = port
        self.haproxy = _require("haproxy")
        self.socket = self.dir / "haproxy.sock"
        self.config = self.dir / "haproxy.cfg"
        on_down = " on-marked-down shutdown-sessions" if shutdown_sessions else ""
        servers = "".join(
            f"    server {node.name} {node.host}:{node.port} check port {node.api_port}\n"
            for node in nodes
        )
        self.config.write_text(
            "global\n"
            "    maxconn 500\n"
            # One thread: a server marked down has its sessions cut before HAProxy
            # reads anything more from them (no cross-thread wake-up to race).
            "    nbthread 1\n"
            f"    stats socket {self.socket} mode 600 level admin\n"
            "defaults\n"
            "    mode tcp\n"
            "    timeout connect 2s\n"
            # Long idle timeouts: the tests hold idle sessions; only a failover cuts them.
            "    timeout client 1h\n"
            "    timeout server 1h\n"
            "    timeout check 2s\n"
            "listen postgres\n"
            f"    bind {self.host}:{self.port}\n"
            # Patroni answers 200 on /primary only on the node that holds the leader lock.
            "    option httpchk GET /primary\n"
            "    http-check expect status 200\n"
            f"    default-server inter 500ms fall 2 rise 1{on_down}\n"
            f"{servers}"
        )

    def _start_args(self) -> list[str]:
        return [self.haproxy, "-db", "-f", str(self.config)]

    def _ready(self) -> bool:
        return self.socket.exists() and self._port_open()

    def command(self, command: str) -> str:
        """One command on the admin socket; HAProxy answers and closes."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(str(self.socket))
            sock.sendall(f"{command}\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_states(self) -> dict[str, str]:
        """HAProxy's own view: backend server name -> status (UP, DOWN, "UP 1/2", ...)."""
        lines = self.command("show stat").lstrip("# ").splitlines()
        return {
            row["svname"]: row["status"]
            for row in csv.DictReader(line for line in lines if line)
            if row["pxname"] == "postgres" and row["svname"] not in ("FRONTEND", "BACKEND")
        }


class PatroniCluster:
    """etcd + ``nodes`` Patroni/PostgreSQL nodes + HAProxy, on 127.0.0.1, in a throwaway dir.

    ``shutdown_sessions``: HAProxy's ``on-marked-down shutdown-sessions``, which
    cuts the sessions to a node as soon as its health check marks it down. Turn it
    off to keep sessions open on a node that is no longer the primary.
    """

    host = "127.0.0.1"

    def __init__(
        self, *, nodes: int = 2, shutdown_sessions: bool = True, base_dir: str | None = None
    ) -> None:
        if nodes < 2:
            raise ValueError("a failover needs at least two nodes")
        self.node_count = nodes
        self.shutdown_sessions = shutdown_sessions
        self.base_dir = base_dir
        self.dir: Path | None = None
        self.nodes: dict[str, _Node] = {}
        self._etcd: _Etcd | None = None
        self._haproxy: _HAProxy | None = None
        self.bindir = _postgres_bindir()

    # ##### Life cycle #####

    def __enter__(self) -> PatroniCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """HAProxy's frontend port: the current primary."""
        if self._haproxy is None:
            raise ServerError("the cluster is not started")
        return self._haproxy.port

    def start(self, timeout: float = 120.0) -> None:
        """Start everything; return once HAProxy routes to a writable leader and every
        replica streams from it. A start that fails stops what it started."""
        if self.dir is not None:
            raise ServerError("the cluster is already started")
        try:
            self._start(timeout)
        except Exception as exc:
            tail = self.log_tail()
            self.stop()
            raise ServerError(f"the Patroni cluster did not start: {exc}\n{tail}") from exc
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(deadline - time.monotonic(), 0.1)

        self.dir = Path(tempfile.mkdtemp(prefix="connguard-failover-", dir=self.base_dir))
        base = str(self.dir)
        taken: set[int] = set()

        def port() -> int:
            # Distinct: free_port() may hand out the same port twice in a row.
            while (candidate := free_port()) in taken:
                pass
            taken.add(candidate)
            return candidate

        self._etcd = _Etcd(base, port(), port())
        # The components' own directories are inside; their user must get through.
        self._etcd._chown(self.dir)
        self._etcd.start(left())
        for index in range(1, self.node_count + 1):
            node = _Node(base, f"pg{index}", port(), port())
            node.config.write_text(json.dumps(self._patroni_config(node), indent=2))
            self.nodes[node.name] = node
        self._haproxy = _HAProxy(base, port(), list(self.nodes.values()), self.shutdown_sessions)
        # One after the other, from this thread: --pdeathsig follows the starting
        # thread. Each start returns once its REST API answers; they bootstrap
        # together (one runs initdb, the others wait for it and copy it).
        for node in self.nodes.values():
            node.start(left())
        self._haproxy.start(left())
        leader = self.leader(left())
        self._wait_routed(leader, left())
        # Created on the leader: replication copies it to the others.
        self.sql(leader, f"CREATE DATABASE {DATABASE}", "postgres")
        self.wait_replicas_streaming(left())

    def _patroni_config(self, node: _Node) -> dict[str, Any]:
        assert self._etcd is not None
        hba = [
            # The unix socket is in the node's own directory, which only postgres enters.
            "local all all trust",
            f"host replication {REPLICATION_USER} 127.0.0.1/32 scram-sha-256",
            "host all all 127.0.0.1/32 scram-sha-256",
        ]
        return {
            "scope": "connguard",
            "namespace": "/connguard/",
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"{node.host}:{node.api_port}",
                "connect_address": f"{node.host}:{node.api_port}",
            },
            "etcd3": {"hosts": [f"{self._etcd.host}:{self._etcd.port}"]},
            "bootstrap": {
                "dcs": {
                    # A dead leader's lock expires in 10 s, each node looks every
                    # second, and a DCS or PostgreSQL hiccup under 5 s demotes nobody.
                    "ttl": 10,
                    "loop_wait": 1,
                    "retry_timeout": 5,
                    "maximum_lag_on_failover": 16 * 1024 * 1024,
                    # A crashed primary fails over at once instead of being
                    # restarted in place (default: 300 s of trying).
                    "primary_start_timeout": 0,
                    "postgresql": {
                        # A demoted primary can have WAL the new one never got (a
                        # crash before its last WAL was sent): rewind it so it can follow.
                        "use_pg_rewind": True,
                        # No replication slots: Patroni creates a member's slot on a
                        # new primary only in its next loop, and a rejoining replica
                        # that asks first is refused and retries only after
                        # wal_retrieve_retry_interval (5 s). wal_keep_size keeps the WAL.
                        "use_slots": False,
                        "pg_hba": hba,
                        "parameters": {
                            "wal_level": "replica",
                            "hot_standby": "on",
                            # pg_rewind needs hint-bit changes in the WAL.
                            "wal_log_hints": "on",
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                            "wal_keep_size": "128MB",
                            "max_connections": 200,
                            "shared_buffers": "32MB",
                            # Throwaway data: an OS crash is no concern, speed is.
                            "fsync": "off",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
            },
            "postgresql": {
                "listen": f"{node.host}:{node.port}",
                "connect_address": f"{node.host}:{node.port}",
                "data_dir": str(node.data),
                "bin_dir": self.bindir,
                "pgpass": str(node.dir / "pgpass"),
                "authentication": {
                    "superuser": {"username": USER, "password": PASSWORD},
                    "replication": {
                        "username": REPLICATION_USER,
                        "password": REPLICATION_PASSWORD,
                    },
                },
                # A fast checkpoint: a spread one paces itself over minutes
                # (checkpoint_timeout * checkpoint_completion_target) before the copy.
                "basebackup": [{"checkpoint": "fast"}],
                "parameters": {
                    "unix_socket_directories": str(node.dir),
                    "logging_collector": "on",
                    "log_directory": str(node.dir / "log"),
                    "log_filename": "postgresql.log",
                    "log_line_prefix": "%m [%p] %q%u@%d ",
                },
            },
            "watchdog": {"mode": "off"},
        }

    def stop(self) -> None:
        """Stop every process of the cluster and remove its directory. Safe to call twice,
        and after a start that failed half way."""
        try:
            if self._haproxy is not None:
                self._haproxy.stop(remove=False)
            # Patroni first, so that it neither restarts nor promotes anything while
            # its PostgreSQL stops; then a fast shutdown of every postmaster at once.
            for node in self.nodes.values():
                node.kill_patroni()
            postmasters = [pid for node in self.nodes.values() if (pid := node.postmaster_pid())]
            for pid in postmasters:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT)
            with contextlib.suppress(ServerError):
                _wait(
                    "PostgreSQL fast shutdown",
                    lambda: not any(os.path.exists(f"/proc/{pid}") for pid in postmasters),
                    timeout=30,
                )
            if self._etcd is not None:
                self._etcd.stop(remove=False)
        finally:
            directory, self.dir = self.dir, None
            self.nodes = {}
            self._etcd = self._haproxy = None
            if directory is not None:
                # Whatever is left (a postmaster that did not stop, a pg_rewind or
                # pg_basebackup Patroni had running): every process working in there.
                try:
                    self._kill_leftovers(directory)
                finally:
                    shutil.rmtree(directory, ignore_errors=True)

    @staticmethod
    def _processes_in(directory: Path) -> list[int]:
        prefix = f"{directory}/"
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if (f"{cwd}/").startswith(prefix) or prefix in cmdline:
                found.append(int(entry))
        return found

    def _kill_leftovers(self, directory: Path) -> None:
        def gone() -> bool:
            left = self._processes_in(directory)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return not left

        _wait(f"the processes in {directory} to end", gone, timeout=30)

    # ##### What the cluster reports #####

    def _node(self, name: str) -> _Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise ServerError(f"no node {name!r}; the nodes are {sorted(self.nodes)}") from None

    def node_port(self, name: str) -> int:
        """The PostgreSQL port of this node (direct, not through HAProxy)."""
        return self._node(name).port

    def members(self) -> list[dict[str, Any]]:
        """Patroni's ``GET /cluster`` members (name, role, state, timeline, lag...),
        from the first node whose REST API answers."""
        for node in self.nodes.values():
            with contextlib.suppress(*_NO_ANSWER):
                status, body = _http(f"{node.api}/cluster", timeout=2)
                if status == 200:
                    members: list[dict[str, Any]] = json.loads(body)["members"]
                    return members
        return []

    def _current_leader(self) -> str | None:
        for member in self.members():
            if member["role"] == "leader" and member.get("state") == "running":
                return str(member["name"])
        return None

    def leader(self, timeout: float = 30.0) -> str:
        """The node that holds the leader lock with PostgreSQL running (waits for one)."""
        result: str = _wait("a running leader", self._current_leader, timeout, self.log_tail)
        return result

    def replicas(self) -> list[str]:
        leader = self.leader()
        return [name for name in self.nodes if name != leader]

    # ##### SQL #####

    def _psql(
        self, port: int, statements: list[str], database: str
    ) -> subprocess.CompletedProcess[str]:
        node = next(iter(self.nodes.values()))
        args = [os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t", "-h", self.host,
                "-p", str(port), "-U", USER, "-d", database, "-v", "ON_ERROR_STOP=1"]  # fmt: skip
        for statement in statements:
            # One -c each: psql sends each on its own, outside any transaction
            # block (ALTER SYSTEM refuses to run in one).
            args += ["-c", statement]
        env = {**os.environ, "PGPASSWORD": PASSWORD, "PGCONNECT_TIMEOUT": "3"}
        return subprocess.run(
            node._cmd(args), capture_output=True, text=True, env=env, cwd=node.dir, check=False
        )

    def sql(self, name: str, statement: str, database: str = DATABASE) -> str:
        """Run SQL on this node directly (not through HAProxy) as the superuser, with psql."""
        result = self._psql(self.node_port(name), [statement], database)
        if result.returncode:
            raise ServerError(f"psql on {name} failed ({result.returncode}):\n{result.stderr}")
        return result.stdout.strip()

    def settings(self, engine: str | None = None, **extra: object) -> dict[str, object]:
        """A ``DATABASES`` entry through HAProxy (the current primary), guarded unless
        ``engine`` says otherwise."""
        return {
            "ENGINE": engine or ENGINE,
            "NAME": DATABASE,
            "USER": USER,
            "PASSWORD": PASSWORD,
            "HOST": self.host,
            "PORT": str(self.port),
            **extra,
        }

    # ##### Waits #####

    def _routed_to(self, leader: str) -> bool:
        """HAProxy has only this node up, and a session through it lands on it, writable."""
        assert self._haproxy is not None
        states = self._haproxy.server_states()
        if states.get(leader) != "UP" or any(
            not status.startswith("DOWN") for name, status in states.items() if name != leader
        ):
            return False
        query = "SELECT inet_server_port(), pg_is_in_recovery()"
        result = self._psql(self.port, [query], "postgres")
        return result.returncode == 0 and result.stdout.strip() == f"{self.node_port(leader)}|f"

    def _wait_routed(self, leader: str, timeout: float = 30.0) -> None:
        _wait(
            f"HAProxy routing to {leader}", lambda: self._routed_to(leader), timeout, self.log_tail
        )

    def wait_routed(self, timeout: float = 30.0) -> str:
        """Wait until HAProxy routes to the leader alone (and a session through it can
        write); return the leader."""
        leader = self.leader(timeout)
        self._wait_routed(leader, timeout)
        return leader

    def wait_replicas_streaming(self, timeout: float = 60.0) -> None:
        """Wait until every replica streams from the leader and has replayed all the
        WAL the leader had when this was called (so earlier writes are visible there)."""
        leader = self.leader(timeout)

        def position() -> str | None:
            # Refused while a just-promoted leader is still leaving recovery.
            with contextlib.suppress(ServerError):
                return self.sql(leader, "SELECT pg_current_wal_lsn()", "postgres")
            return None

        target = _wait(f"{leader}'s WAL position", position, timeout, self.log_tail)
        others = {name for name in self.nodes if name != leader}
        query = (
            "SELECT application_name FROM pg_stat_replication "
            f"WHERE state = 'streaming' AND replay_lsn >= '{target}'"
        )

        def streaming() -> bool:
            with contextlib.suppress(ServerError):
                return others <= set(self.sql(leader, query, "postgres").split())
            return False

        _wait(
            f"replicas {sorted(others)} streaming from {leader}", streaming, timeout, self.log_tail
        )

    # ##### Failovers #####

    def switchover(self, candidate: str | None = None, timeout: float = 60.0) -> str:
        """A planned switchover (Patroni's REST API) to ``candidate`` (default: a
        replica). Returns the new leader once Patroni reports it and HAProxy routes
        writes to it."""
        old = self.leader(timeout)
        new = candidate or next(name for name in self.nodes if name != old)
        # Patroni refuses a switchover to a replica that is not running and caught up.
        self.wait_replicas_streaming(timeout)
        status, body = _http(
            f"{self._node(old).api}/switchover",
            {"leader": old, "candidate": new},
            timeout=timeout,
        )
        if status != 200:
            raise ServerError(f"switchover {old} -> {new} refused ({status}): {body}")
        _wait(f"{new} leading", lambda: self._current_leader() == new, timeout, self.log_tail)
        self._wait_routed(new, timeout)
        return new

    def kill_leader_postmaster(self, timeout: float = 60.0) -> str:
        """SIGKILL the leader's postmaster (a crash). Returns the new leader once a
        replica is promoted and HAProxy routes writes to it."""
        old = self.leader(timeout)
        # A replica that lags (or is still starting) is no candidate: Patroni would
        # restart the crashed primary in place instead.
        self.wait_replicas_streaming(timeout)
        pid = self._node(old).postmaster_pid()
        if pid is None:
            raise ServerError(f"{old} has no running postmaster")
        os.kill(pid, signal.SIGKILL)

        def promoted() -> str | None:
            leader = self._current_leader()
            return leader if leader not in (None, old) else None

        new: str = _wait(f"a leader other than {old}", promoted, timeout, self.log_tail)
        self._wait_routed(new, timeout)
        return new

    # ##### A demoted node that keeps its sessions #####

    def _set_read_only(self, name: str, value: str) -> None:
        statement = (
            "ALTER SYSTEM RESET default_transaction_read_only"
            if value == "off"
            else f"ALTER SYSTEM SET default_transaction_read_only = {value}"
        )
        self._run_checked(name, [statement, "SELECT pg_reload_conf()"])

        # A new session forks from the postmaster: once one sees the value, the
        # postmaster has reloaded and has signalled every backend, and each open
        # session applies the reload before its next statement.
        def applied() -> bool:
            return self.sql(name, "SHOW default_transaction_read_only", "postgres") == value

        _wait(f"default_transaction_read_only = {value} on {name}", applied, 30)

    def _run_checked(self, name: str, statements: list[str]) -> None:
        result = self._psql(self.node_port(name), statements, "postgres")
        if result.returncode:
            raise ServerError(f"psql on {name} failed ({result.returncode}):\n{result.stderr}")

    def make_read_only_keeping_sessions(self, name: str) -> None:
        """Make this node refuse writes as a demoted primary does, but keep its open
        sessions: their next transaction is read-only, and a write in it fails with
        SQLSTATE 25006 (read_only_sql_transaction). Patroni and HAProxy still see it
        as the primary. ``make_writable()`` undoes it."""
        self._set_read_only(name, "on")

    def make_writable(self, name: str) -> None:
        self._set_read_only(name, "off")

    def mark_down_in_haproxy(self, name: str) -> None:
        """Make HAProxy mark this node down, as a failed health check does (with
        ``shutdown_sessions``, that cuts its sessions through HAProxy at once). The
        node's next passing check, 500 ms on, marks it up again if it is the primary;
        ``wait_routed()`` waits for that."""
        assert self._haproxy is not None
        answer = self._haproxy.command(f"set server postgres/{self._node(name).name} health down")
        if answer.strip():
            raise ServerError(f"HAProxy refused to mark {name} down: {answer.strip()}")

    # ##### Diagnostics #####

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of every component's log, for failure messages."""
        parts = []
        components: list[_Server] = [
            c for c in (self._etcd, *self.nodes.values(), self._haproxy) if c is not None
        ]
        for component in components:
            parts.append(f"--- {component.name} ---\n{component.log_tail(lines)}")
            if isinstance(component, _Node):
                with contextlib.suppress(OSError):
                    text = (component.dir / "log" / "postgresql.log").read_text(errors="replace")
                    tail = "\n".join(text.splitlines()[-lines:])
                    parts.append(f"--- {component.name} postgresql ---\n{tail}")
        return "\n".join(parts)
