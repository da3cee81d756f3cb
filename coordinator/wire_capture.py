"""A byte-recording TCP relay on loopback, for egress audits and byte counts.

The relay sits between SuperNodes and the SuperLink (``node -> relay -> SuperLink``) and
keeps every byte in both directions, per connection. The egress test scans the upstream
bytes (what the coordinator receives) for canary strings planted in tenant data; the
benchmark reads the byte counts. Flower 1.42 speaks plain HTTP/1.1 with protobuf bodies
when ``--insecure`` and does not compress, so a planted string would appear verbatim.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


@dataclass(slots=True)
class ConnectionLog:
    """Bytes seen on one relayed connection."""

    upstream: bytearray = field(default_factory=bytearray)  # client -> server
    downstream: bytearray = field(default_factory=bytearray)  # server -> client


class CaptureRelay:
    """Relay ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>``, recording all bytes.

    Use as a context manager; ``port`` is the port clients should connect to.
    """

    def __init__(self, target_port: int, *, port: int = 0) -> None:
        self._target = (LOOPBACK, target_port)
        self._listener = socket.create_server((LOOPBACK, port))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._connections: list[ConnectionLog] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="capture-relay", daemon=True)

    def __enter__(self) -> CaptureRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._listener.close()

    # -- results ---------------------------------------------------------------------
    def upstream_bytes(self) -> bytes:
        """Everything clients sent through the relay, connections concatenated."""
        with self._lock:
            return b"".join(bytes(c.upstream) for c in self._connections)

    def downstream_bytes(self) -> bytes:
        with self._lock:
            return b"".join(bytes(c.downstream) for c in self._connections)

    def totals(self) -> tuple[int, int]:
        """(bytes up, bytes down) so far."""
        with self._lock:
            return (sum(len(c.upstream) for c in self._connections),
                    sum(len(c.downstream) for c in self._connections))

    # -- relay loop ------------------------------------------------------------------
    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, None)
        peers: dict[socket.socket, tuple[socket.socket, bytearray]] = {}
        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept(sel, peers)
                    continue
                other, sink = peers[sock]
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(sel, peers, sock)
                    continue
                with self._lock:
                    sink.extend(data)
                try:
                    other.sendall(data)
                except OSError:
                    self._drop(sel, peers, sock)
        for sock in list(peers):
            self._drop(sel, peers, sock)
        sel.close()

    def _accept(
        self,
        sel: selectors.BaseSelector,
        peers: dict[socket.socket, tuple[socket.socket, bytearray]],
    ) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            server = socket.create_connection(self._target, timeout=5)
        except OSError:
            client.close()
            return
        log = ConnectionLog()
        with self._lock:
            self._connections.append(log)
        client.setblocking(True)
        server.setblocking(True)
        peers[client] = (server, log.upstream)
        peers[server] = (client, log.downstream)
        sel.register(client, selectors.EVENT_READ, None)
        sel.register(server, selectors.EVENT_READ, None)

    @staticmethod
    def _drop(
        sel: selectors.BaseSelector,
        peers: dict[socket.socket, tuple[socket.socket, bytearray]],
        sock: socket.socket,
    ) -> None:
        for s in (sock, peers.get(sock, (None, None))[0]):
            if s is None or s not in peers:
                continue
            peers.pop(s, None)
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(s)
            s.close()


def find_canaries(data: bytes, canaries: Iterable[str]) -> list[str]:
    """The canaries whose UTF-8 bytes (or case-folded ASCII) occur in ``data``."""
    folded = data.lower()
    found = []
    for canary in canaries:
        raw = canary.encode("utf-8")
        if raw in data or raw.lower() in folded:
            found.append(canary)
    return found
