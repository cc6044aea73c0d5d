"""A TCP proxy on 127.0.0.1 that counts bytes and can cut connections.

Used to count what a client really sends (a ping is bytes on the wire, so
"zero extra round trips" is a byte count, not a timing) and to play a
middlebox that resets connections.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.host = "127.0.0.1"
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.bytes_up = 0  # client -> server
        self.bytes_down = 0  # server -> client
        self.connections = 0
        self._closed = False
        self._cut_next_reply = threading.Event()
        self._replies_to_pass = 0
        self._refuse_after_cut = False
        threading.Thread(target=self._accept_loop, daemon=True, name="proxy-accept").start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                # close() may have run since accept(): its reset_all() would not
                # see this pair, and both sockets would stay open until the GC.
                closed = self.closed()
                if not closed:
                    self._pairs.append((client, upstream))
                    self.connections += 1
            if closed:
                client.close()
                upstream.close()
                return
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, up: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not up and self._cut_next_reply.is_set():
                    with self._lock:
                        self._replies_to_pass -= 1
                        cut = self._replies_to_pass < 0
                    if cut:
                        # The request reached the server and ran; its reply is lost.
                        self._cut_next_reply.clear()
                        if self._refuse_after_cut:
                            self._stop_listening()
                        self.reset_all()
                        break
                with self._lock:
                    if up:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def retarget(self, host: str, port: int) -> tuple[str, int]:
        """Send new connections to ``host:port``; return the previous target.

        Open connection pairs stay on the server they were made to, as they do
        when a load balancer or a virtual IP fails over: only connections that
        start after this call reach the new server.
        """
        with self._lock:
            # The accept loop reads self.target once per connection, in one
            # attribute read, so a whole tuple swapped in here is never seen half-made.
            previous, self.target = self.target, (host, port)
        return previous

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_up = self.bytes_down = 0

    def cut_next_reply(self, *, after: int = 0, then_refuse: bool = False) -> None:
        """Drop a reply from the server and reset the connection.

        The statement that reply answers has reached the server and run, but the
        client never learns how it ended: the "outcome unknown" case. ``after``
        lets that many replies through first; ``then_refuse`` also stops
        accepting connections, as a server or middlebox that is down does.
        """
        with self._lock:
            self._replies_to_pass = after
        self._refuse_after_cut = then_refuse
        self._cut_next_reply.set()

    def reset_all(self) -> None:
        """Reset every open connection, as a load balancer does when it drops state."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    # SO_LINGER 0: close() sends RST instead of FIN.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                with contextlib.suppress(OSError):
                    # Wakes the pump thread blocked in recv() on this socket;
                    # close() alone would wait for it, and send nothing.
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    def closed(self) -> bool:
        return self._closed

    def _stop_listening(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            # Wakes the accept() thread; close() alone would leave it accepting.
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()

    def close(self) -> None:
        self._stop_listening()
        self.reset_all()
