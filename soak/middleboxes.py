"""HAProxy and pgbouncer as local processes, from config files in a throwaway dir.

They reuse testbed's server base class: a free port on 127.0.0.1, a process in
its own session that dies with the soak, ``restart()`` on the same port. Both
run unprivileged when the soak runs as root (pgbouncer refuses root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal

from testbed.servers import MariaDBServer, PostgreSQLServer, ServerError, _Server

# Short, so that the soak's idle pauses outlast them and the middleboxes
# close idle connections under the workers, as production ones do.
IDLE_TIMEOUT = 2
POOL_MODE = {"session": "session", "tx": "transaction"}


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if not found:
        raise ServerError(f"{name} not found; install the Debian package {name}")
    return found


class HAProxy(_Server):
    """TCP mode in front of MariaDB; closes a connection idle for IDLE_TIMEOUT s."""

    run_as = "haproxy"  # the Debian package's user
    name = "haproxy"
    # SIGTERM is haproxy's hard stop: every connection is closed at once, as
    # when a load balancer is replaced.
    stop_signal = signal.SIGTERM

    def __init__(self, upstream: MariaDBServer, base_dir: str | None = None) -> None:
        super().__init__(base_dir)
        self.upstream = upstream
        self.config = self.dir / "haproxy.cfg"
        self.config.write_text(
            "global\n"
            "  maxconn 2000\n"
            "defaults\n"
            "  mode tcp\n"
            "  timeout connect 3s\n"
            f"  timeout client {IDLE_TIMEOUT}s\n"
            f"  timeout server {IDLE_TIMEOUT}s\n"
            "listen mariadb\n"
            f"  bind 127.0.0.1:{self.port}\n"
            f"  server db {upstream.host}:{upstream.port}\n"
        )

    def _start_args(self) -> list[str]:
        return [_binary("haproxy"), "-db", "-f", str(self.config)]

    def _ready(self) -> bool:
        return self._port_open()


class PgBouncer(_Server):
    """pgbouncer in front of PostgreSQL, with one database name per pooling mode.

    ``connguard_session`` pools by session, ``connguard_tx`` by transaction;
    both reach the server's ``connguard`` database. Clients idle for
    IDLE_TIMEOUT s are disconnected (``client_idle_timeout``).
    """

    run_as = "postgres"
    name = "pgbouncer"
    # SIGTERM is pgbouncer's immediate shutdown (SIGINT waits for clients).
    stop_signal = signal.SIGTERM
    MODES = {"session": "connguard_session", "tx": "connguard_tx"}

    def __init__(self, upstream: PostgreSQLServer, base_dir: str | None = None) -> None:
        super().__init__(base_dir)
        self.upstream = upstream
        self.config = self.dir / "pgbouncer.ini"
        target = f"host={upstream.host} port={upstream.port} dbname={upstream.database}"
        databases = "".join(
            f"{name} = {target} pool_mode={POOL_MODE[mode]}\n" for mode, name in self.MODES.items()
        )
        (self.dir / "users.txt").write_text(f'"{upstream.user}" ""\n')
        self.config.write_text(
            "[databases]\n"
            f"{databases}"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'users.txt'}\n"
            f"client_idle_timeout = {IDLE_TIMEOUT}\n"
            # After a failed server login pgbouncer refuses every client for
            # server_login_retry (15 s by default): after a PostgreSQL restart
            # that, not the guard, would set the recovery time on these routes.
            "server_login_retry = 1\n"
            "max_client_conn = 500\n"
            "default_pool_size = 40\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        self._chown_all()

    def _chown_all(self) -> None:
        # The server's user must read its config and write its pid file.
        if self._user:
            entry = pwd.getpwnam(self._user)
            for path in self.dir.iterdir():
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _start_args(self) -> list[str]:
        return [_binary("pgbouncer"), str(self.config)]

    def _ready(self) -> bool:
        return self._port_open()

    def settings_for(self, mode: str) -> dict[str, object]:
        return {"HOST": self.host, "PORT": str(self.port), "NAME": self.MODES[mode]}
