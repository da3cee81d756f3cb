"""Appends that must not wait for SQLite's write lock (``hermes_fed.store.sqlite.
without_waiting``): refused at once while another connection holds the lock, nothing
written; the same connection waits as before outside the block."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from hermes_fed.errors import LogBusyError
from hermes_fed.store import Keyring, open_store
from hermes_fed.store.sqlite import without_waiting

from .helpers import accepted


def test_an_append_without_waiting_is_refused_while_another_writer_holds_the_lock(
    tmp_path: Path,
) -> None:
    # Prepare: a log, and another connection (another process's, in effect) holding its
    # write lock
    db = tmp_path / "acme.db"
    store = open_store(f"sqlite:///{db}", "acme", keyring=Keyring.generate("acme"))
    store.append(accepted("session-before"))
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    try:
        # Execute / Assert: refused at once, nothing written
        started = time.monotonic()
        with without_waiting(), pytest.raises(LogBusyError):
            store.append(accepted("session-refused"))
        assert time.monotonic() - started < 5  # not the 60 s busy timeout
        assert not store.read_stream("session-refused")

        # ... and outside the block an append waits for the lock, as before
        done = threading.Event()

        def waiting_append() -> None:
            store.append(accepted("session-waited"))
            done.set()

        writer = threading.Thread(target=waiting_append)
        writer.start()
        assert not done.wait(0.3)  # still waiting for the lock
    finally:
        other.execute("ROLLBACK")
        other.close()
    writer.join(30)
    assert done.is_set()
    assert [e.stream_id for e in store.read()] == ["session-before", "session-waited"]
    store.close()
