"""Round trips counted on the wire, not inferred from time.

``testbed.proxy.Proxy`` counts the bytes each way; this subclass also counts
requests: a burst of client bytes that follows the server's reply (or opens the
connection) is one request the client then waits on. The MySQL and PostgreSQL
protocols are request/reply, so that is one round trip; a ping, a reconnect's
handshake or a ``SET`` at connect all show up, a statement split over several
segments does not count twice.
"""

from __future__ import annotations

import socket

from testbed.proxy import Proxy


class RoundTripProxy(Proxy):
    def __init__(self, target_host: str, target_port: int) -> None:
        self.round_trips = 0
        # Per client socket: whether the client sent the last bytes seen.
        self._client_spoke_last: dict[socket.socket, bool] = {}
        super().__init__(target_host, target_port)

    def _pump(self, source: socket.socket, sink: socket.socket, up: bool) -> None:
        client = source if up else sink
        super()._pump(_Listened(source, self, client, up), sink, up)  # type: ignore[arg-type]

    def _heard(self, client: socket.socket, up: bool) -> None:
        with self._lock:
            if up and not self._client_spoke_last.get(client, False):
                self.round_trips += 1
            self._client_spoke_last[client] = up

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "round_trips": self.round_trips,
                "bytes_up": self.bytes_up,
                "bytes_down": self.bytes_down,
                "connections": self.connections,
            }


class _Listened:
    """The source socket of one direction of the proxy: tells it who spoke."""

    def __init__(self, sock: socket.socket, proxy: RoundTripProxy, client: socket.socket, up: bool):
        self._sock, self._proxy, self._client, self._up = sock, proxy, client, up

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        if data:
            self._proxy._heard(self._client, self._up)
        return data
