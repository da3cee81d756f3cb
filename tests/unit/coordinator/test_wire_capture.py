"""The capture relay: every byte recorded, and one slow reader never stalls the others."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from coordinator.deploy.wire_capture import LOOPBACK, CaptureRelay


class _Upstream:
    """A loopback server: connections whose first byte is ``h`` (hold) are accepted and never
    read; every other connection is echoed back."""

    def __init__(self) -> None:
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        first = conn.recv(1)
        if first == b"h":
            self.held.append(conn)  # never read again: its buffers fill up
            return
        data = first
        while data:
            conn.sendall(data)
            data = conn.recv(65536)
        conn.close()

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    server = _Upstream()
    yield server
    server.close()


def _echo(port: int, payload: bytes) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=10) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        got = bytearray()
        while chunk := conn.recv(65536):
            got.extend(chunk)
    return bytes(got)


def test_relay_records_both_directions_byte_for_byte(upstream: _Upstream) -> None:
    # Prepare
    payload = bytes(range(256)) * 4096  # 1 MiB, larger than any socket buffer
    # Execute
    with CaptureRelay(upstream.port) as relay:
        echoed = _echo(relay.port, payload)
        up, down = relay.upstream_bytes(), relay.downstream_bytes()
    # Assert
    assert echoed == payload
    assert up == payload and down == payload


def _echoed(conn: socket.socket, data: bytes) -> bytes:
    """Send ``data`` on an open connection and read its echo back whole."""
    conn.sendall(data)
    got = bytearray()
    while len(got) < len(data):
        chunk = conn.recv(65536)
        assert chunk, "the connection closed before the echo"
        got.extend(chunk)
    return bytes(got)


def test_upstream_since_a_mark_holds_what_every_connection_sent_after_it(
        upstream: _Upstream) -> None:
    # Prepare: connection A stays open across the mark; B came and went before it
    with CaptureRelay(upstream.port) as relay:
        kept = socket.create_connection((LOOPBACK, relay.port), timeout=10)
        assert _echoed(kept, b"a1") == b"a1"
        assert _echo(relay.port, b"b1") == b"b1"
        mark = relay.mark()

        # Execute: A sends more, then a new connection C
        assert _echoed(kept, b"a2") == b"a2"
        assert _echo(relay.port, b"c1") == b"c1"
        kept.close()
        since, whole = relay.upstream_since(mark), relay.upstream_bytes()

    # Assert: A's and C's new bytes, nothing from before the mark; an offset into the
    # whole capture (what the egress tests used) takes B's old bytes and misses A's new
    assert since == b"a2c1"
    assert whole == b"a1a2b1c1"
    assert whole[len(b"a1b1"):] == b"b1c1"


def test_a_peer_that_stops_reading_does_not_stall_other_connections(upstream: _Upstream
                                                                    ) -> None:
    # Prepare: a connection pushes far more than the kernel buffers hold to a server that
    # never reads it; the old relay blocked in sendall there and served nobody else.
    with CaptureRelay(upstream.port) as relay:
        stuck = socket.create_connection((LOOPBACK, relay.port), timeout=10)
        stuck.setblocking(False)
        sent, chunk = 0, b"h" + b"x" * 65535
        for _ in range(400):  # up to 26 MiB, until our own send buffer is full too
            try:
                sent += stuck.send(chunk)
            except BlockingIOError:
                break
        # Execute: another connection's request and reply, while the first is stuck
        echoed = _echo(relay.port, b"ping " * 10)
        stuck.close()
    # Assert
    assert sent > CaptureRelay._HIGH_WATER
    assert echoed == b"ping " * 10
