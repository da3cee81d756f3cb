"""WAL checkpoints on a thread of their own (``hermes_fed.store.wal_checkpoint``), on real
SQLite databases in WAL mode whose writer never checkpoints (``wal_autocheckpoint=0``)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hermes_fed.store.wal_checkpoint import WalCheckpointer

ROW = b"x" * 3000  # about one page a row


def _open(path: Path, wal: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE IF NOT EXISTS t (v BLOB)")
    return conn


def _commit(conn: sqlite3.Connection, lock: threading.Lock, n: int) -> None:
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?)", (ROW + str(n).encode(),))
        conn.execute("COMMIT")


def _until(condition: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)  # a poll interval
    return False


def test_the_wal_stays_bounded_while_commits_keep_coming(tmp_path: Path) -> None:
    # Prepare: two databases whose writer never checkpoints; one gets a checkpointer that
    # holds the writer (the lock every commit takes) for its tail
    watched, control = tmp_path / "watched.db", tmp_path / "control.db"
    conns = {watched: _open(watched), control: _open(control)}
    locks = {watched: threading.Lock(), control: threading.Lock()}
    copied: list[int] = []
    checkpointer = WalCheckpointer(watched, pages=64, on_checkpoint=lambda _s, f: copied.append(f),
                                   hold_writers=lambda: locks[watched])
    checkpointer.start()
    try:
        # Execute: 1,500 commits of a page each into both, announced to the checkpointer
        for n in range(1500):
            _commit(conns[watched], locks[watched], n)
            checkpointer.request()
            _commit(conns[control], locks[control], n)
    finally:
        checkpointer.stop()

    # Assert: the control's WAL holds every commit; the watched one was copied and started
    # again from its beginning (a passive checkpoint alone never lets it while commits come)
    assert os.path.getsize(f"{control}-wal") > 1500 * 4096
    assert os.path.getsize(f"{watched}-wal") < 400 * 4120
    assert checkpointer.checkpoints >= 5 and checkpointer.failures == 0
    assert all(f > 0 for f in copied)
    for path, conn in conns.items():
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1500,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()
        assert _open(path).execute("SELECT count(*) FROM t").fetchone() == (1500,)


def test_waiting_frames_is_what_sqlite_reports_for_its_wal(tmp_path: Path) -> None:
    # Prepare: a fresh WAL and 20 commits, nothing checkpointed
    db = tmp_path / "log.db"
    conn = _open(db)
    lock = threading.Lock()
    checkpointer = WalCheckpointer(db)
    for n in range(20):
        _commit(conn, lock, n)

    # Execute: the index's count, then SQLite's own answer (its checkpoint copies them all)
    waiting = checkpointer.waiting_frames()
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
    after = checkpointer.waiting_frames()
    checkpointer.stop()

    # Assert
    assert busy == 0 and waiting == frames == copied and frames >= 20
    assert after == 0


def test_without_a_readable_wal_index_it_checkpoints_by_commit_count(tmp_path: Path) -> None:
    # Prepare: a database in rollback-journal mode (no -shm): the index cannot be read
    db = tmp_path / "plain.db"
    conn = _open(db, wal=False)
    checkpointer = WalCheckpointer(db, pages=128)  # fallback: one per 16 commits
    assert checkpointer.waiting_frames() is None
    checkpointer.start()
    try:
        for round_ in range(1, 4):
            # Execute: 16 commits announced
            for n in range(16):
                _commit(conn, threading.Lock(), n)
                checkpointer.request()

            # Assert: one more checkpoint (SQLite answers "no WAL", nothing fails)
            assert _until(lambda: checkpointer.checkpoints >= round_)  # noqa: B023
            assert checkpointer.checkpoints == round_
    finally:
        checkpointer.stop()
    assert checkpointer.failures == 0
    conn.close()


def test_a_failed_checkpoint_is_counted_and_the_thread_goes_on(tmp_path: Path) -> None:
    # Prepare: a "database" that is not one: every checkpoint fails
    bogus = tmp_path / "not-a-db"
    bogus.write_bytes(b"this is not a SQLite database" * 200)
    checkpointer = WalCheckpointer(bogus, pages=64)  # fallback: one per 8 commits
    checkpointer.start()
    try:
        for round_ in range(1, 3):
            # Execute: 8 commits announced
            for _ in range(8):
                checkpointer.request()

            # Assert: tried and failed, and the thread goes on to the next
            assert _until(lambda: checkpointer.failures >= round_)  # noqa: B023
        assert checkpointer.failures == 2 and checkpointer.checkpoints == 0
    finally:
        checkpointer.stop()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"pages": 0}, "pages must be at least 1"),
    ({"synchronous": "OFF"}, "synchronous must be FULL, NORMAL or EXTRA"),
])
def test_bad_settings_are_refused(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WalCheckpointer(tmp_path / "log.db", **kwargs)  # type: ignore[arg-type]
