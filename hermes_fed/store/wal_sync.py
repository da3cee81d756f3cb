"""Sync-behind for a SQLite log in WAL mode with ``synchronous=NORMAL``.

With ``synchronous=NORMAL`` a commit writes its WAL frames to the operating system and
returns: a killed process (``kill -9`` included) loses nothing, which is what invariant 6
(acknowledged = durable) asks, but the frames reach the disk only at the next checkpoint,
so a power cut or an OS crash can lose every commit since the last one -- at low traffic,
hours of them. ``synchronous=FULL`` closes that window by an fsync inside every commit,
on the caller's path.

:class:`WalSyncer` closes it right behind the commit instead: a committer calls
:meth:`WalSyncer.request` after each commit and carries on; one thread ``fdatasync``\\ s
the WAL file at once (one fsync covers every commit before it), so a power cut can lose
only what was committed in the last fsync's time, and the committer never waits on the
disk. The same trade as MySQL's ``innodb_flush_log_at_trx_commit = 2`` with a flush
after every group rather than once a second. Checkpoints stay SQLite's: with NORMAL it
syncs the WAL before copying it into the database and the database after, so no commit
the syncer has not covered yet is lost to a checkpoint either.

The WAL is opened by path and reopened when its inode changes (SQLite deletes it when the
last connection closes and creates it again on the next). ``fdatasync`` works on the
file, not the descriptor: syncing through our own descriptor flushes the frames SQLite
wrote through its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["WalSyncer"]


class WalSyncer:
    """One thread that fsyncs the WAL of the SQLite database at ``db_path`` after commits.

    Parameters
    ----------
    db_path
        The database file; its WAL is ``<db_path>-wal``.
    on_synced
        Called (on the syncer's thread) after each fsync with the seconds from the oldest
        commit it covered to the fsync's end: how long that commit could have been lost
        to a power cut.
    """

    def __init__(self, db_path: str | Path,
                 on_synced: Callable[[float], None] | None = None) -> None:
        self.wal_path = Path(f"{db_path}-wal")
        self._on_synced = on_synced
        self._cond = threading.Condition()
        self._requested = 0  # commits announced
        self._synced = 0  # commits covered by a finished fsync
        self._failed_through = 0  # the last commit whose fsync failed
        self._oldest: float | None = None  # monotonic time of the oldest uncovered commit
        self._stopping = False
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self.syncs = 0  # fsyncs done
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="wal-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self) -> None:
        """A commit just returned: sync it soon. Never blocks on the disk, never raises."""
        with self._cond:
            self._requested += 1
            if self._oldest is None:
                self._oldest = time.monotonic()
            self._cond.notify()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every commit requested so far is synced; False on timeout, on a
        failed fsync among them, or when the syncer stopped before covering them."""
        with self._cond:
            target = self._requested
            done = self._cond.wait_for(
                lambda: self._synced >= target or not self._thread.is_alive(), timeout_s)
            return done and self._synced >= target and self._failed_through < target

    def stop(self) -> None:
        """Sync what was requested, then stop (idempotent)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()
        self._close()

    @property
    def pending(self) -> int:
        """Commits announced and not yet covered by an fsync."""
        with self._cond:
            return self._requested - self._synced

    # --- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._requested > self._synced or self._stopping)
                if self._requested == self._synced:
                    return  # stopping, nothing left
                target, oldest = self._requested, self._oldest
                self._oldest = None
            ok = self._sync()
            done = time.monotonic()
            with self._cond:
                # A failed fsync is counted and logged, not retried in a loop: the commits
                # it covered count as done (their durability is SQLite's NORMAL) and
                # :meth:`flush` reports False for them.
                self._synced = target
                if not ok:
                    self._failed_through = target
                self._cond.notify_all()
            if ok and self._on_synced is not None and oldest is not None:
                try:
                    self._on_synced(done - oldest)
                except Exception:  # pragma: no cover - a metrics callback
                    log.exception("event=wal_sync_callback_failed")

    def _sync(self) -> bool:
        try:
            fd = self._descriptor()
            if fd is None:
                return True  # no WAL: a checkpoint emptied and removed it, nothing to sync
            os.fdatasync(fd)
            self.syncs += 1
            return True
        except OSError as exc:
            self.failures += 1
            self._close()
            log.error("event=wal_sync_failed path=%s error=%s", self.wal_path, exc)
            return False

    def _descriptor(self) -> int | None:
        try:
            st = os.stat(self.wal_path)
        except FileNotFoundError:
            self._close()
            return None
        if self._fd is None or self._inode != (st.st_dev, st.st_ino):
            self._close()
            self._fd = os.open(self.wal_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            fst = os.fstat(self._fd)
            self._inode = (fst.st_dev, fst.st_ino)
        return self._fd

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
            self._inode = None
