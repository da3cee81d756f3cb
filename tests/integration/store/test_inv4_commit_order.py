"""Invariant 4: commit order. With >= 4 concurrent writers (threads, and separately
processes), a subscriber reading ``position > checkpoint`` in a loop sees every event
exactly once."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable

import pytest

from hermes_fed.store import Keyring, SqlEventStore

from .helpers import MakeStore
from .workers import batch, write_batches

WRITERS = 4
BATCHES = 25  # per writer
SIZE = 100  # events per batch: 4 * 25 * 100 = 10,000 events


class Subscriber:
    """Reads ``position > checkpoint`` in a loop (the pattern of ``EventStore.subscribe``)."""

    def __init__(self, store: SqlEventStore) -> None:
        self.store = store
        self.seen: list[tuple[int, str]] = []
        self.polls = 0

    def poll(self) -> int:
        checkpoint = self.seen[-1][0] if self.seen else 0
        got = [(e.position, e.event_id.hex) for e in self.store.read(after=checkpoint)]
        self.seen.extend(got)
        self.polls += 1
        return len(got)

    def follow(self, writers_done: Callable[[], bool]) -> None:
        while not writers_done():
            if not self.poll():
                time.sleep(0.002)  # yield the (shared) CPU to the writers
        while self.poll():  # drain what committed after the last poll
            pass


def _assert_exactly_once(sub: Subscriber, acknowledged: list[str]) -> None:
    positions = [p for p, _ in sub.seen]
    ids = [i for _, i in sub.seen]
    assert len(acknowledged) == WRITERS * BATCHES * SIZE
    assert positions == list(range(1, len(positions) + 1))  # no gap, no repeat, in order
    assert len(ids) == len(set(ids))  # exactly once
    assert set(ids) == set(acknowledged)  # nothing skipped, nothing extra
    assert sub.polls > 10  # the subscriber really ran alongside the writers


def test_inv4_subscriber_sees_every_event_once_with_concurrent_writer_threads(make_store: MakeStore) -> None:
    # Prepare: one store instance (own connection pool) per writer and for the subscriber
    ring = Keyring.generate("acme")
    writers = [make_store(keyring=ring) for _ in range(WRITERS)]
    sub = Subscriber(make_store(keyring=ring))
    acknowledged: list[str] = []
    lock = threading.Lock()

    def write(w: int) -> None:
        for number in range(BATCHES):
            ids = [r.event_id.hex for r in writers[w].append(batch(w, number, SIZE))]
            with lock:
                acknowledged.extend(ids)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]

    # Execute
    for t in threads:
        t.start()
    sub.follow(lambda: not any(t.is_alive() for t in threads))
    for t in threads:
        t.join()

    # Assert
    _assert_exactly_once(sub, acknowledged)
    assert sub.store.verify().ok


@pytest.mark.sql  # spawned processes share a database, not this process's memory
def test_inv4_subscriber_sees_every_event_once_with_concurrent_writer_processes(
    make_store: MakeStore, backend: tuple[str, str | None]
) -> None:
    # Prepare: the parent creates the log; spawned children open it by URL
    url, schema = backend
    ring = Keyring.generate("acme")
    sub = Subscriber(make_store(keyring=ring))
    ctx = multiprocessing.get_context("spawn")

    # Execute
    with ctx.Pool(WRITERS) as pool:
        pending = pool.starmap_async(
            write_batches, [(url, schema, "acme", ring.to_json(), w, BATCHES, SIZE) for w in range(WRITERS)]
        )
        sub.follow(pending.ready)
        acknowledged = [i for ids in pending.get(timeout=120) for i in ids]

    # Assert
    _assert_exactly_once(sub, acknowledged)
    events = list(sub.store.read())
    for w in range(WRITERS):  # each writer's batches in its own order, each batch contiguous
        mine = [e for e in events if e.metadata["writer"] == w]
        assert [e.metadata["batch"] for e in mine] == sorted(e.metadata["batch"] for e in mine)
        for number in range(BATCHES):
            positions = [e.position for e in mine if e.metadata["batch"] == number]
            assert positions == list(range(positions[0], positions[0] + SIZE))
    assert sub.store.verify().ok
