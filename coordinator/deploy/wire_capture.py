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

    def mark(self) -> tuple[int, ...]:
        """How many bytes each connection has sent so far, for :meth:`upstream_since`."""
        with self._lock:
            return tuple(len(c.upstream) for c in self._connections)

    def upstream_since(self, mark: tuple[int, ...]) -> bytes:
        """What clients sent after ``mark``: each connection's bytes past its length then,
        concatenated. (An offset into :meth:`upstream_bytes` misses what a connection kept
        alive across the mark sent later: its new bytes sit before later connections'.)"""
        with self._lock:
            return b"".join(bytes(c.upstream[mark[i] if i < len(mark) else 0:])
                            for i, c in enumerate(self._connections))

    def downstream_bytes(self) -> bytes:
        with self._lock:
            return b"".join(bytes(c.downstream) for c in self._connections)

    def totals(self) -> tuple[int, int]:
        """(bytes up, bytes down) so far."""
        with self._lock:
            return (sum(len(c.upstream) for c in self._connections),
                    sum(len(c.downstream) for c in self._connections))

    # -- relay loop ------------------------------------------------------------------
    # One thread, all sockets non-blocking. A blocking ``sendall`` to a peer that is slow
    # to read (a SuperNode busy training, under load) stalled every other connection,
    # heartbeats included, until the SuperLink declared the nodes unavailable. Each socket
    # now has its own queue of bytes still to write, drained when the socket is writable;
    # while a queue holds more than ``_HIGH_WATER`` the relay stops reading from the
    # socket that fills it (backpressure, so a stuck reader costs memory for one buffer).
    _HIGH_WATER = 1 << 20

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, None)
        pipes: dict[socket.socket, _Pipe] = {}
        while not self._stop.is_set():
            for key, events in sel.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept(sel, pipes)
                    continue
                pipe = pipes.get(sock)
                if pipe is None:
                    continue
                if events & selectors.EVENT_WRITE and not self._flush(pipe):
                    self._drop(sel, pipes, sock)
                    continue
                if events & selectors.EVENT_READ and not self._pump(pipe, pipes):
                    self._drop(sel, pipes, sock)
                    continue
                if self._half_close(pipe, pipes):
                    self._drop(sel, pipes, sock)
                    continue
                for s in (sock, pipe.peer):
                    self._watch(sel, pipes, s)
        for sock in list(pipes):
            self._drop(sel, pipes, sock)
        sel.close()

    def _pump(self, pipe: _Pipe, pipes: dict[socket.socket, _Pipe]) -> bool:
        """Read what ``pipe.sock`` has, record it, queue it for the peer; False on EOF."""
        try:
            data = pipe.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:  # the sender closed its side: pass the half-close on once drained
            pipe.eof = True
            return True
        with self._lock:
            pipe.record.extend(data)
        pipes[pipe.peer].pending.extend(data)
        return self._flush(pipes[pipe.peer])

    @staticmethod
    def _half_close(pipe: _Pipe, pipes: dict[socket.socket, _Pipe]) -> bool:
        """Shut the write side of a socket whose source ended and whose queue is drained;
        True once both directions are done (the connection can be closed)."""
        for end in (pipe, pipes[pipe.peer]):
            source = pipes[end.peer]
            if source.eof and not end.pending and not end.shut:
                with contextlib.suppress(OSError):
                    end.sock.shutdown(socket.SHUT_WR)
                end.shut = True
        return pipe.shut and pipes[pipe.peer].shut

    @staticmethod
    def _flush(pipe: _Pipe) -> bool:
        """Write as much of ``pipe.pending`` as ``pipe.sock`` takes now; False on error."""
        while pipe.pending:
            try:
                sent = pipe.sock.send(pipe.pending)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            del pipe.pending[:sent]
        return True

    def _watch(self, sel: selectors.BaseSelector, pipes: dict[socket.socket, _Pipe],
               sock: socket.socket) -> None:
        """Read unless the peer's queue is full; write while this socket's queue is not
        empty."""
        pipe = pipes[sock]
        events = 0
        if not pipe.eof and len(pipes[pipe.peer].pending) < self._HIGH_WATER:
            events |= selectors.EVENT_READ
        if pipe.pending:
            events |= selectors.EVENT_WRITE
        registered = sock in sel.get_map()
        if events and registered:
            sel.modify(sock, events, None)
        elif events:
            sel.register(sock, events, None)
        elif registered:
            sel.unregister(sock)

    def _accept(self, sel: selectors.BaseSelector,
                pipes: dict[socket.socket, _Pipe]) -> None:
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
        client.setblocking(False)
        server.setblocking(False)
        pipes[client] = _Pipe(client, server, log.upstream)
        pipes[server] = _Pipe(server, client, log.downstream)
        sel.register(client, selectors.EVENT_READ, None)
        sel.register(server, selectors.EVENT_READ, None)

    @staticmethod
    def _drop(sel: selectors.BaseSelector, pipes: dict[socket.socket, _Pipe],
              sock: socket.socket) -> None:
        """Close ``sock`` and its peer. An orderly close has drained both queues already
        (``_half_close``); after an error, what is still queued is dropped: writing it here
        would block every other connection again."""
        pipe = pipes.get(sock)
        for s in (sock, pipe.peer if pipe else None):
            if s is None or pipes.pop(s, None) is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(s)
            s.close()


@dataclass(slots=True)
class _Pipe:
    """One direction of a relayed connection: bytes read from ``sock`` go to ``peer``."""

    sock: socket.socket
    peer: socket.socket
    record: bytearray  # every byte read from ``sock`` (the audit)
    pending: bytearray = field(default_factory=bytearray)  # still to write to ``sock``
    eof: bool = False  # ``sock`` will send nothing more
    shut: bool = False  # the write side of ``sock`` is shut


def find_canaries(data: bytes, canaries: Iterable[str]) -> list[str]:
    """The canaries whose UTF-8 bytes (or case-folded ASCII) occur in ``data``."""
    folded = data.lower()
    found = []
    for canary in canaries:
        raw = canary.encode("utf-8")
        if raw in data or raw.lower() in folded:
            found.append(canary)
    return found
