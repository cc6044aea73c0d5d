"""Real MariaDB and PostgreSQL servers as local processes in a throwaway directory.

Each server listens on 127.0.0.1 on a free port, with its data in a temporary
directory that ``stop()`` removes. ``restart()`` keeps the data and the port, so
clients see a real server restart. When run as root (CI, containers), the
servers run as the ``mysql``/``postgres`` system users that the Debian packages
create, since neither server agrees to run as root.

Sessions: ``kill()`` ends client sessions from the server side (KILL CONNECTION,
pg_terminate_backend()) and by default waits until the server no longer lists
them; ``kill_through()`` does the same through a connection the caller keeps
open (so that no connect is timed with the kill); ``wait_gone()`` and
``wait_running()`` wait for what the server shows, never for a guessed time.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class ServerError(RuntimeError):
    pass


# How often the waits below ask the server again.
POLL_INTERVAL = 0.02
# The command-line client's report of a KILL of a session that is not there.
_UNKNOWN_THREAD = re.compile(r"^ERROR 1094 \(HY000\).*?Unknown thread id: (\d+)", re.MULTILINE)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _find(names: list[str], extra_dirs: list[str]) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for directory in extra_dirs:
            candidate = os.path.join(directory, name)
            if os.access(candidate, os.X_OK):
                return candidate
    raise ServerError(
        f"none of {names} found; install the Debian packages mariadb-server and postgresql"
    )


class _Server:
    run_as = ""
    name = ""
    engine = ""  # connguard's ENGINE for this vendor
    database = ""
    user = ""
    password = ""

    def __init__(self, base_dir: str | None = None, *, tls: bool = False) -> None:
        self.tls = tls
        self.dir = Path(tempfile.mkdtemp(prefix=f"connguard-{self.name}-", dir=base_dir))
        self.port = free_port()
        self.host = "127.0.0.1"
        self.process: subprocess.Popen[bytes] | None = None
        self._user = self.run_as if os.geteuid() == 0 else ""
        self._chown(self.dir)

    def _chown(self, *paths: str | Path) -> None:
        """Give these paths to the server's user, when it runs as one."""
        if self._user:
            entry = pwd.getpwnam(self._user)
            for path in paths:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _make_certificate(self) -> None:
        """A self-signed certificate for 127.0.0.1, readable only by the server's user."""
        self.certificate = str(self.dir / "server.crt")
        self.key = str(self.dir / "server.key")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", self.key, "-out", self.certificate],
            check=True, capture_output=True,
        )  # fmt: skip
        os.chmod(self.key, 0o600)
        self._chown(self.key, self.certificate)

    def _cmd(self, args: list[str], *, die_with_parent: bool = False) -> list[str]:
        prefix: list[str] = []
        if die_with_parent:
            # If the test run is killed before its fixtures can stop the server,
            # the kernel stops it: no server outlives the run that started it.
            # The signal follows the *thread* that started the server, so start
            # and restart servers from the main thread.
            prefix.append(f"--pdeathsig={signal.Signals(self.stop_signal).name[3:]}")
        if self._user:
            prefix += [f"--reuid={self._user}", f"--regid={self._user}", "--init-groups"]
        return ["setpriv", *prefix, *args] if prefix else args

    def _call(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._cmd(args), input=stdin, capture_output=True, text=True, cwd=self.dir, check=False
        )

    def _run(self, args: list[str]) -> str:
        result = self._call(args)
        if result.returncode:
            raise ServerError(
                f"{args[0]} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result.stdout

    def _initialise(self, args: list[str]) -> None:
        """Make the data directory; one that fails leaves no directory behind."""
        try:
            self._run(args)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _start_args(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.dir / "server.log", "ab")
        self.process = subprocess.Popen(
            self._cmd(self._start_args(), die_with_parent=True),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited at start:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.05)
        self.stop(remove=False)
        raise ServerError(f"{self.name} did not become ready in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(
                (self.dir / "server.log").read_text(errors="replace").splitlines()[-lines:]
            )
        return ""

    # SIGTERM is a clean shutdown for mariadbd; postgres wants SIGINT for a fast one.
    stop_signal = signal.SIGTERM

    def stop(self, *, remove: bool = True, timeout: float = 60.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(self.stop_signal)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def client_tls_options(self) -> dict[str, object]:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop(remove=False)
        self.start()

    def settings(self, engine: str | None = None, **extra: object) -> dict[str, object]:
        """A ``DATABASES`` entry for this server, guarded unless ``engine`` says otherwise."""
        if self.tls:
            extra["OPTIONS"] = {**self.client_tls_options(), **dict(extra.get("OPTIONS") or {})}  # type: ignore[arg-type]
        return {
            "ENGINE": engine or self.engine,
            "NAME": self.database,
            "USER": self.user,
            "PASSWORD": self.password,
            "HOST": self.host,
            "PORT": str(self.port),
            **extra,
        }

    def _port_open(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex((self.host, self.port)) == 0


class _DatabaseServer(_Server):
    """A database server: its client sessions can be listed, watched and killed."""

    vendor = ""  # Django's name for it

    def sql(self, statements: str) -> str:
        raise NotImplementedError

    @classmethod
    def kill_statements(cls, session_ids: Iterable[int]) -> list[str]:
        """The SQL that ends these sessions (one statement each, or one for all)."""
        raise NotImplementedError

    def _kill_now(self, ids: list[int]) -> set[int]:
        """Send the kills in one client call; return the ids the server did not know."""
        raise NotImplementedError

    @classmethod
    def _kill_through(cls, cursor: Any, session_id: int) -> bool:
        raise NotImplementedError

    def _alive_sql(self, ids: list[int]) -> str:
        raise NotImplementedError

    def _running_sql(self, session_id: int, starting: str | None) -> str:
        raise NotImplementedError

    def kill(
        self,
        *session_ids: int,
        missing_ok: bool = False,
        wait: bool = True,
        timeout: float = 30.0,
    ) -> set[int]:
        """End these client sessions from the server side, as a DBA or a failover does.

        Return the ids this call ended. A session that is not there (it ended by
        itself, or was never there) raises ``ServerError``, unless ``missing_ok``.
        With ``wait``, return only once the server no longer lists any of them:
        a session that ended is one its client can no longer reach.
        """
        ids = [int(ident) for ident in session_ids]
        missing = self._kill_now(ids) if ids else set()
        if missing and not missing_ok:
            raise ServerError(f"{self.name} has no session {sorted(missing)} to kill")
        if wait:
            self.wait_gone(*ids, timeout=timeout)
        return set(ids) - missing

    @classmethod
    def kill_through(cls, cursor: Any, session_id: int, *, missing_ok: bool = False) -> bool:
        """``kill()`` through ``cursor``, a DB-API or Django cursor on a connection
        that the caller keeps open: no client process, no connect. Does not wait.
        Return False if the session was not there (only with ``missing_ok``)."""
        if cls._kill_through(cursor, int(session_id)):
            return True
        if not missing_ok:
            raise ServerError(f"{cls.name} has no session {session_id} to kill")
        return False

    def sessions_alive(self, *session_ids: int) -> set[int]:
        """Which of these sessions the server still lists (killed ones included,
        until they are gone)."""
        if not session_ids:
            return set()
        return {int(ident) for ident in self.sql(self._alive_sql(list(session_ids))).split()}

    def wait_gone(self, *session_ids: int, timeout: float = 30.0) -> None:
        """Wait until the server lists none of these sessions."""
        deadline = time.monotonic() + timeout
        while alive := self.sessions_alive(*session_ids):
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.name} still lists sessions {sorted(alive)} after {timeout}s"
                )
            time.sleep(POLL_INTERVAL)

    def statement_running(self, session_id: int, starting: str | None = None) -> bool:
        """Whether the session is running a statement now (one that starts with
        ``starting``, if given), as the server itself reports it."""
        return self.sql(self._running_sql(int(session_id), starting)).strip() != "0"

    def wait_running(
        self, session_id: int, starting: str | None = None, timeout: float = 30.0
    ) -> None:
        """Wait until the server shows the session running a statement."""
        deadline = time.monotonic() + timeout
        while not self.statement_running(session_id, starting):
            if time.monotonic() > deadline:
                what = f"a statement starting {starting!r}" if starting else "a statement"
                raise ServerError(f"{self.name} session {session_id} ran no {what} in {timeout}s")
            time.sleep(POLL_INTERVAL)


class MariaDBServer(_DatabaseServer):
    """MariaDB with a ``connguard`` database and a ``connguard`` user that may KILL."""

    run_as = "mysql"
    name = "mariadb"
    vendor = "mysql"
    engine = "connguard.db.backends.mysql"
    database = "connguard"
    user = "connguard"
    password = "connguard"

    def __init__(self, base_dir: str | None = None, *, tls: bool = False) -> None:
        super().__init__(base_dir, tls=tls)
        self.socket = str(self.dir / "mysqld.sock")
        self.mariadbd = _find(["mariadbd", "mysqld"], ["/usr/sbin", "/usr/libexec"])
        self.client = _find(["mariadb", "mysql"], [])
        install_db = _find(["mariadb-install-db", "mysql_install_db"], ["/usr/bin", "/usr/scripts"])
        args = [
            install_db,
            "--no-defaults",
            f"--datadir={self.dir / 'data'}",
            # Temporary tables in this server's own directory, not in the /tmp
            # that every other server (and every test run) on the machine shares.
            f"--tmpdir={self.dir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        if self._user:
            args.append(f"--user={self._user}")
        try:
            self._initialise(args)
        except ServerError as exc:
            # mariadbd has been seen to crash (signal 11, in the Aria engine's
            # clean-up of a temporary table) while installing the sys schema, on
            # a machine busy with other servers. That is the server's bug, not a
            # state of this test bed: start over once, from an empty directory.
            if "got signal" not in str(exc):
                raise
            self.dir.mkdir(mode=0o700)
            self._chown(self.dir)
            self._initialise(args)

    def _start_args(self) -> list[str]:
        return [
            self.mariadbd,
            "--no-defaults",
            f"--datadir={self.dir / 'data'}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket}",
            f"--pid-file={self.dir / 'mysqld.pid'}",
            f"--tmpdir={self.dir}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=0",
            "--max-connections=500",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            *([f"--user={self._user}"] if self._user else []),
            *self._tls_args(),
        ]

    def _tls_args(self) -> list[str]:
        if not self.tls:
            return []
        if not hasattr(self, "certificate"):
            self._make_certificate()
        # Unix-socket connections (the admin client) count as secure.
        return [
            f"--ssl-cert={self.certificate}",
            f"--ssl-key={self.key}",
            "--require-secure-transport=ON",
        ]

    def client_tls_options(self) -> dict[str, object]:
        return {"ssl": {"ca": self.certificate}}

    def _ready(self) -> bool:
        return os.path.exists(self.socket) and self._port_open()

    def start(self, timeout: float = 60.0) -> None:
        super().start(timeout)
        self.sql(
            f"CREATE DATABASE IF NOT EXISTS {self.database};"
            f"CREATE USER IF NOT EXISTS '{self.user}'@'%' IDENTIFIED BY '{self.password}';"
            f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'%' WITH GRANT OPTION;"
        )

    def _client_args(self) -> list[str]:
        return [self.client, "--no-defaults", "-uroot", f"--socket={self.socket}", "-N", "-B"]

    def sql(self, statements: str) -> str:
        """Run SQL as root through the unix socket, with the command-line client."""
        return self._run([*self._client_args(), "-e", statements])

    # ##### Client sessions #####

    # ER_NO_SUCH_THREAD, "Unknown thread id": the session is not (or no longer) there.
    UNKNOWN_THREAD = 1094

    @classmethod
    def kill_statements(cls, session_ids: Iterable[int]) -> list[str]:
        return [f"KILL CONNECTION {int(ident)}" for ident in session_ids]

    def _kill_now(self, ids: list[int]) -> set[int]:
        # --force (which -e ignores, hence standard input): go on past a session
        # that is not there, and say which it was.
        script = "".join(f"{statement};\n" for statement in self.kill_statements(ids))
        result = self._call([*self._client_args(), "--force"], stdin=script)
        missing = {int(ident) for ident in _UNKNOWN_THREAD.findall(result.stderr)}
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        if len(errors) > len(missing) or (result.returncode and not missing):
            raise ServerError(f"KILL failed ({result.returncode}):\n{result.stderr}")
        return missing

    @classmethod
    def _kill_through(cls, cursor: Any, session_id: int) -> bool:
        (statement,) = cls.kill_statements([session_id])
        try:
            cursor.execute(statement)
        except Exception as exc:
            # The driver's error, or Django's with the same args.
            if exc.args and exc.args[0] == cls.UNKNOWN_THREAD:
                return False
            raise
        return True

    def _alive_sql(self, ids: list[int]) -> str:
        listed = ", ".join(str(int(ident)) for ident in ids)
        return f"SELECT ID FROM information_schema.PROCESSLIST WHERE ID IN ({listed})"

    def _running_sql(self, session_id: int, starting: str | None) -> str:
        query = (
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            f"WHERE ID = {session_id} AND COMMAND = 'Query'"
        )
        if starting:
            literal = starting.replace("\\", "\\\\").replace("'", "''")
            query += f" AND LEFT(INFO, {len(starting)}) = '{literal}'"
        return query


class PostgreSQLServer(_DatabaseServer):
    """PostgreSQL with a ``connguard`` database; trust authentication on 127.0.0.1."""

    run_as = "postgres"
    name = "postgresql"
    vendor = "postgresql"
    engine = "connguard.db.backends.postgresql"
    database = "connguard"
    user = "postgres"
    password = ""
    stop_signal = signal.SIGINT
    # A server default other than UTC, so that tests can see Django's SET TIME ZONE.
    server_timezone = "America/New_York"

    def __init__(self, base_dir: str | None = None, *, tls: bool = False) -> None:
        super().__init__(base_dir, tls=tls)
        bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
        preferred = [d for d in bindirs if "/15/" in d] + bindirs
        if os.environ.get("CONNGUARD_PG_BINDIR"):
            preferred.insert(0, os.environ["CONNGUARD_PG_BINDIR"])
        self.postgres = _find_in(preferred, "postgres")
        self.bindir = os.path.dirname(self.postgres)
        self._initialise(
            [
                os.path.join(self.bindir, "initdb"),
                "-D",
                str(self.dir / "data"),
                "-U",
                self.user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ]
        )

    def _start_args(self) -> list[str]:
        return [
            self.postgres,
            "-D",
            str(self.dir / "data"),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.dir}",
            *self._tls_args(),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=64MB",
            "-c",
            f"timezone={self.server_timezone}",
        ]

    def _tls_args(self) -> list[str]:
        if not self.tls:
            return []
        if not hasattr(self, "certificate"):
            self._make_certificate()
        return ["-c", "ssl=on", "-c", f"ssl_cert_file={self.certificate}",
                "-c", f"ssl_key_file={self.key}"]  # fmt: skip

    def client_tls_options(self) -> dict[str, object]:
        return {"sslmode": "verify-full", "sslrootcert": self.certificate}

    def _ready(self) -> bool:
        result = subprocess.run(
            [os.path.join(self.bindir, "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)],
            check=False,
        )
        return result.returncode == 0

    def start(self, timeout: float = 60.0) -> None:
        super().start(timeout)
        exists = self.sql(
            f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'", "postgres"
        )
        if not exists.strip():
            self.sql(f"CREATE DATABASE {self.database}", "postgres")

    def sql(self, statement: str, database: str | None = None) -> str:
        """Run SQL as the superuser with psql over TCP."""
        return self._run(
            [
                os.path.join(self.bindir, "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database or self.database,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                statement,
            ]
        )

    # ##### Client sessions #####

    @classmethod
    def kill_statements(cls, session_ids: Iterable[int]) -> list[str]:
        # pg_terminate_backend() is false (with a warning) for a pid that is no
        # backend: the statement returns those, the ones that were not there.
        listed = ", ".join(str(int(ident)) for ident in session_ids)
        return [
            f"SELECT pid FROM unnest(ARRAY[{listed}]::integer[]) AS pid "
            "WHERE NOT pg_terminate_backend(pid)"
        ]

    def _kill_now(self, ids: list[int]) -> set[int]:
        (statement,) = self.kill_statements(ids)
        return {int(ident) for ident in self.sql(statement).split()}

    @classmethod
    def _kill_through(cls, cursor: Any, session_id: int) -> bool:
        (statement,) = cls.kill_statements([session_id])
        cursor.execute(statement)
        return not cursor.fetchall()

    def _alive_sql(self, ids: list[int]) -> str:
        listed = ", ".join(str(int(ident)) for ident in ids)
        return f"SELECT pid FROM pg_stat_activity WHERE pid IN ({listed})"

    def _running_sql(self, session_id: int, starting: str | None) -> str:
        query = (
            f"SELECT count(*) FROM pg_stat_activity WHERE pid = {session_id} AND state = 'active'"
        )
        if starting:
            literal = starting.replace("'", "''")
            query += f" AND left(query, {len(starting)}) = '{literal}'"
        return query


def _find_in(directories: list[str], name: str) -> str:
    for directory in directories:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return _find([name], [])


class RedisServer(_Server):
    """Redis without persistence, for the task-queue integration tests."""

    run_as = "redis"
    name = "redis"

    def __init__(self, base_dir: str | None = None) -> None:
        super().__init__(base_dir)
        self.redis_server = _find(["redis-server"], ["/usr/bin", "/usr/sbin"])

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _start_args(self) -> list[str]:
        return [
            self.redis_server,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]

    def _ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


# Django's vendor name -> the server class, for code that has a connection and
# no server object (the benchmark's workers kill through kill_through()).
BY_VENDOR: dict[str, type[MariaDBServer] | type[PostgreSQLServer]] = {
    "mysql": MariaDBServer,
    "postgresql": PostgreSQLServer,
}
