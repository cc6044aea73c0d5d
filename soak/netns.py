"""A network namespace with a silent blackhole between the workers and the servers.

The run creates ``connguard-soak-<pid>`` and a veth pair into it, 10.254.254.1
(host side) and 10.254.254.2 (inside), a /30 that routes nowhere else. Inside,
socat listens on 10.254.254.2 and forwards each connection to a server's
unix socket (unix sockets are files, so they cross network namespaces while
TCP to the host's 127.0.0.1 does not). A worker whose route points at
10.254.254.2 reaches the server through the namespace.

``blackhole()`` makes nftables inside the namespace drop every packet, both
ways, with no reset and no ICMP: a client sees exactly nothing, as with a
vanished host or an expired NAT entry. Without nftables in the kernel it falls
back to a blackhole route for the host side's address, which drops replies
just as silently. (``tc netem loss`` needs sch_netem, absent on many kernels;
``ip link set down`` is not silent: the client's neighbour entry fails.)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time

HOST_ADDRESS = "10.254.254.1"
INNER_ADDRESS = "10.254.254.2"
PREFIX = 30
TABLE = "connguard_soak"


class NamespaceError(RuntimeError):
    pass


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and result.returncode:
        raise NamespaceError(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return result


class Namespace:
    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise NamespaceError("the blackhole needs root (ip netns)")
        for tool in ("ip", "socat"):
            if not shutil.which(tool):
                raise NamespaceError(f"{tool} not found; scripts/bootstrap installs it")
        self.name = f"connguard-soak-{os.getpid()}"
        # Interface names are at most 15 characters.
        self.outer, self.inner = f"cgs{os.getpid() % 100000}a", f"cgs{os.getpid() % 100000}b"
        self.forwarders: list[subprocess.Popen[bytes]] = []
        self.method = ""
        self.blackholed = False
        atexit.register(self.delete)
        try:
            self._create()
        except BaseException:
            self.delete()
            raise

    def _exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", self.name, *args, check=check)

    def _create(self) -> None:
        _run("ip", "netns", "add", self.name)
        _run("ip", "link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        _run("ip", "link", "set", self.inner, "netns", self.name)
        _run("ip", "addr", "add", f"{HOST_ADDRESS}/{PREFIX}", "dev", self.outer)
        _run("ip", "link", "set", self.outer, "up")
        self._exec("ip", "addr", "add", f"{INNER_ADDRESS}/{PREFIX}", "dev", self.inner)
        self._exec("ip", "link", "set", self.inner, "up")
        self._exec("ip", "link", "set", "lo", "up")
        self.method = self._prepare_blackhole()

    def _prepare_blackhole(self) -> str:
        """nftables if the kernel has it; else a blackhole route. Probed, not assumed."""
        if shutil.which("nft"):
            made = self._exec("nft", "add", "table", "inet", TABLE, check=False)
            if made.returncode == 0:
                for hook in ("input", "output"):
                    spec = f"{{ type filter hook {hook} priority 0; policy accept; }}"
                    self._exec("nft", "add", "chain", "inet", TABLE, hook, spec)
                return "nftables"
        return "route"

    def forward(self, port: int, unix_socket: str) -> tuple[str, int]:
        """Forward INNER_ADDRESS:port, inside the namespace, to a server's unix socket."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.name, "setpriv", "--pdeathsig=KILL", "socat",
             f"TCP-LISTEN:{port},bind={INNER_ADDRESS},reuseaddr,fork,backlog=128",
             f"UNIX-CONNECT:{unix_socket}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        self.forwarders.append(process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock, contextlib.suppress(OSError):
                sock.settimeout(0.5)
                if sock.connect_ex((INNER_ADDRESS, port)) == 0:
                    return INNER_ADDRESS, port
            time.sleep(0.05)
        raise NamespaceError(f"socat did not listen on {INNER_ADDRESS}:{port}")

    def blackhole(self, on: bool) -> None:
        if on == self.blackholed:
            return
        if self.method == "nftables":
            for hook, match in (("input", "iifname"), ("output", "oifname")):
                if on:
                    self._exec("nft", "add", "rule", "inet", TABLE, hook, match, self.inner, "drop")
                else:
                    self._exec("nft", "flush", "chain", "inet", TABLE, hook)
        else:
            self._exec("ip", "route", "add" if on else "del", "blackhole", f"{HOST_ADDRESS}/32")
        self.blackholed = on

    def delete(self) -> None:
        """Stop the forwarders, delete the namespace and the veth. Safe to call twice."""
        for process in self.forwarders:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.forwarders = []
        _run("ip", "netns", "del", self.name, check=False)
        # Deleting the namespace destroys the inner end, and with it the pair;
        # delete the outer end too in case the namespace never got it.
        _run("ip", "link", "del", self.outer, check=False)
