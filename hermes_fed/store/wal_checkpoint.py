"""WAL checkpoints off the committer's path, for a SQLite log in WAL mode.

SQLite checkpoints on its own (``wal_autocheckpoint``, 1,000 pages): the commit that takes
the WAL past the threshold copies every page into the database file and syncs it before it
returns. For the gateway's captures (about 12 pages each) that is one capture in ~80
waiting 20-30 ms at ``synchronous=NORMAL`` (and every call queued behind it).

:class:`WalCheckpointer` moves that work to a thread: the committer's connections are
opened with ``wal_autocheckpoint=0`` (``SqliteBackend(autocheckpoint=False)``), it calls
:meth:`request` after each commit and carries on, and the thread, once the WAL holds
``pages`` frames not yet copied, runs ``PRAGMA wal_checkpoint(PASSIVE)`` on a connection
of its own. A passive checkpoint takes no lock a writer needs, so commits go on while it
copies; but then it never copies the frames those commits added, and SQLite starts the WAL
again from its beginning only when a writer finds it wholly copied: the WAL would grow
without end. So a second passive checkpoint copies that tail (a few pages, well under a
millisecond here) inside ``hold_writers``, a block in which this process's appends wait
(:meth:`~hermes_fed.store.group_commit.GroupCommitter.exclusive`); the next commit
restarts the WAL, whose size stays bounded as before. Durability does not change: the
checkpoint's connection syncs the WAL before it copies and the database after, as
SQLite's own checkpoint does at ``NORMAL`` and ``FULL``.

``bench/gateway/bench_checkpoint.py`` (3,000 captures through the gateway's writer into
two logs side by side, 2026-12-06): p99 of a capture 27.3 and 26.0 ms -> 6.6 and 6.6 ms at
``NORMAL``, 11.7 and 9.6 -> 8.8 and 6.6 ms at ``FULL``; mean -0.3 and -0.1 ms; p50 the
same.

How many frames wait is read from the WAL index (the ``-shm`` file, whose layout is
SQLite's documented file format, https://www.sqlite.org/walformat.html): ``mxFrame`` of
the index header minus ``nBackfill`` of the checkpoint information, looked at every
``_CHECK_EVERY`` commits. A read that fails falls back to one checkpoint every ``pages`` /
8 commits. Other processes on the same log (the node's daemon, an import) keep SQLite's
automatic checkpoints; SQLite runs one checkpoint at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from .sqlite import BUSY_TIMEOUT_MS, SYNCHRONOUS

log = logging.getLogger(__name__)

__all__ = ["WalCheckpointer"]

#: Offsets in the WAL index (native byte order): the first copy of the header's mxFrame,
#: and the checkpoint information's nBackfill after the header's two 48-byte copies.
_MX_FRAME = 16
_N_BACKFILL = 96
_FALLBACK_PAGES_PER_COMMIT = 8
#: Commits between two looks at the WAL index (a wake-up of the thread per commit cost the
#: gateway's event loop more GIL hand-offs than the look is worth).
_CHECK_EVERY = 8


class WalCheckpointer:
    """One thread that checkpoints the WAL of the SQLite database at ``db_path``.

    Parameters
    ----------
    db_path
        The database file (its WAL index is ``<db_path>-shm``).
    pages
        Checkpoint once this many frames wait (SQLite's own default threshold).
    synchronous
        The checkpoint connection's ``synchronous`` (FULL or NORMAL both sync a checkpoint).
    on_checkpoint
        Called on the thread after each checkpoint with its seconds and the frames it
        copied.
    hold_writers
        A context in which this process's writers wait (the gateway's group committer):
        the checkpoint's tail runs in it.
    """

    def __init__(self, db_path: str | Path, *, pages: int = 1000, synchronous: str = "NORMAL",
                 on_checkpoint: Callable[[float, int], None] | None = None,
                 hold_writers: Callable[[], AbstractContextManager[object]] | None = None,
                 ) -> None:
        if pages < 1:
            raise ValueError(f"pages must be at least 1, got {pages}")
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        self.db_path = Path(db_path)
        self.shm_path = Path(f"{db_path}-shm")
        self.pages = pages
        self._synchronous = synchronous
        self._on_checkpoint = on_checkpoint
        self._hold = hold_writers or contextlib.nullcontext
        self._cond = threading.Condition()
        self._commits = 0  # commits announced since the last checkpoint
        self._stopping = False
        self._conn: sqlite3.Connection | None = None
        self._shm: int | None = None
        self._shm_inode: tuple[int, int] | None = None
        self.checkpoints = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self) -> None:
        """A commit just returned: checkpoint if the WAL is due. Never blocks on the disk;
        the thread is woken once every ``_CHECK_EVERY`` commits to read the WAL index."""
        with self._cond:
            self._commits += 1
            if self._commits % _CHECK_EVERY == 0:
                self._cond.notify()

    def stop(self) -> None:
        """Stop the thread (a checkpoint under way finishes first); idempotent."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()
        self._close()

    def waiting_frames(self) -> int | None:
        """Frames in the WAL not yet copied into the database; None if the WAL index
        cannot be read (no WAL yet, or not the documented layout)."""
        index = self._index()
        return None if index is None else max(0, index[0] - index[1])

    def _index(self) -> tuple[int, int] | None:
        """The WAL index's (mxFrame, nBackfill): frames in the WAL, frames copied."""
        try:
            st = os.stat(self.shm_path)
            if self._shm is None or self._shm_inode != (st.st_dev, st.st_ino):
                # SQLite removes the index with the WAL when its last connection closes
                self._close_shm()
                self._shm = os.open(self.shm_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                self._shm_inode = (st.st_dev, st.st_ino)
            header = os.pread(self._shm, _N_BACKFILL + 4, 0)
        except OSError:
            self._close_shm()
            return None
        if len(header) < _N_BACKFILL + 4:
            return None
        (mx_frame,) = struct.unpack_from("=I", header, _MX_FRAME)
        (backfilled,) = struct.unpack_from("=I", header, _N_BACKFILL)
        return int(mx_frame), int(backfilled)

    # --- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        since = 0  # commits since the last checkpoint (the fallback's measure)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._commits >= _CHECK_EVERY or self._stopping)
                if self._stopping:
                    return
                since += self._commits
                self._commits = 0
            index = self._index()
            if index is None:
                due, copied_before = since * _FALLBACK_PAGES_PER_COMMIT >= self.pages, 0
            else:
                due, copied_before = index[0] - index[1] >= self.pages, index[1]
            if due:
                since = 0
                self._checkpoint(copied_before)

    def _checkpoint(self, copied_before: int) -> None:
        """Checkpoint; ``copied_before``: the WAL's frames already copied (SQLite reports
        a total, of which this checkpoint copied the rest)."""
        started = time.perf_counter()
        try:
            conn = self._connection()
            # The bulk while commits go on; then the frames committed meanwhile with this
            # process's writers held off (a few pages), so that the WAL is wholly copied
            # and the next commit starts it again from its beginning. Checkpoints that
            # always overlap a commit never get there: the WAL would grow without end.
            copied = self._pragma(conn)
            with self._hold():
                copied = max(copied, self._pragma(conn)) - copied_before
        except sqlite3.Error as exc:
            self.failures += 1
            self._close_conn()
            log.error("event=wal_checkpoint_failed path=%s error=%s", self.db_path, exc)
            return
        self.checkpoints += 1
        if self._on_checkpoint is not None:
            try:
                self._on_checkpoint(time.perf_counter() - started, max(0, copied))
            except Exception:  # pragma: no cover - a metrics callback
                log.exception("event=wal_checkpoint_callback_failed")

    @staticmethod
    def _pragma(conn: sqlite3.Connection) -> int:
        """One passive checkpoint; the WAL's frames copied so far (-1: there is no WAL)."""
        # fetchall: the statement runs to its end (one left on its row would keep a read
        # lock, and the WAL could not start again from its beginning)
        ((busy, _frames, copied),) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        if busy:
            log.debug("event=wal_checkpoint_busy")
        return int(copied)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # it checkpoints only when asked
            self._conn = conn
        return self._conn

    def _close(self) -> None:
        self._close_conn()
        self._close_shm()

    def _close_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _close_shm(self) -> None:
        if self._shm is not None:
            with contextlib.suppress(OSError):
                os.close(self._shm)
            self._shm = None
            self._shm_inode = None
