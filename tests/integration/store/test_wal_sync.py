"""Sync-behind (``hermes_fed.store.wal_sync``): the WAL of a real SQLite database in WAL
mode at ``synchronous=NORMAL`` is fsynced after the commits announced to the syncer."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from hermes_fed.store.wal_sync import WalSyncer


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
    return conn


def test_a_commit_announced_is_fsynced_and_its_window_reported(tmp_path: Path) -> None:
    # Prepare: a WAL database and a syncer on it
    db = tmp_path / "log.db"
    conn = _open(db)
    windows: list[float] = []
    syncer = WalSyncer(db, windows.append)
    syncer.start()
    try:
        # Execute: a commit, announced
        conn.execute("INSERT INTO t VALUES ('a')")
        syncer.request()
        synced = syncer.flush(10)
    finally:
        syncer.stop()
        conn.close()

    # Assert: one fsync of the WAL, with its window measured from the announcement
    assert synced
    assert syncer.syncs == 1 and syncer.failures == 0 and syncer.pending == 0
    assert len(windows) == 1 and 0 <= windows[0] < 10


def test_commits_announced_during_an_fsync_share_the_next(tmp_path: Path) -> None:
    # Prepare: 8 writer threads, each committing and announcing 50 times
    db = tmp_path / "log.db"
    conn = _open(db)
    lock = threading.Lock()
    syncer = WalSyncer(db)
    syncer.start()

    def writer(n: int) -> None:
        for i in range(50):
            with lock:
                conn.execute("INSERT INTO t VALUES (?)", (f"{n}-{i}",))
            syncer.request()

    # Execute
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    synced = syncer.flush(30)
    syncer.stop()
    conn.close()

    # Assert: every announcement covered, by at most one fsync each
    assert synced and syncer.pending == 0
    assert 1 <= syncer.syncs <= 400


def test_a_recreated_wal_is_reopened_and_a_missing_one_is_nothing_to_sync(tmp_path: Path) -> None:
    # Prepare: a commit synced, then the last connection closes (SQLite removes the WAL)
    db = tmp_path / "log.db"
    conn = _open(db)
    syncer = WalSyncer(db)
    syncer.start()
    try:
        conn.execute("INSERT INTO t VALUES ('a')")
        syncer.request()
        assert syncer.flush(10) and syncer.syncs == 1
        conn.close()
        assert not (db.parent / "log.db-wal").exists()

        # Execute: an announcement with no WAL, then a new connection writes a new WAL
        syncer.request()
        assert syncer.flush(10)
        missing_syncs = syncer.syncs
        conn = _open(db)
        conn.execute("INSERT INTO t VALUES ('b')")
        syncer.request()
        synced = syncer.flush(10)
    finally:
        syncer.stop()
        conn.close()

    # Assert: nothing synced without a WAL; the new WAL synced through a new descriptor
    assert missing_syncs == 1
    assert synced and syncer.syncs == 2 and syncer.failures == 0


def test_stop_syncs_what_was_announced(tmp_path: Path) -> None:
    # Prepare
    db = tmp_path / "log.db"
    conn = _open(db)
    syncer = WalSyncer(db)
    syncer.start()
    conn.execute("INSERT INTO t VALUES ('a')")
    syncer.request()

    # Execute
    syncer.stop()
    conn.close()

    # Assert: the announced commit was fsynced before the thread ended
    assert syncer.pending == 0 and syncer.syncs == 1 and syncer.flush(1)
    syncer.request()  # after the stop: no thread covers it, and flush says so
    assert not syncer.flush(1) and syncer.pending == 1
