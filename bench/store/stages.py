"""Where the time of one batched append goes, stage by stage (``bench_store --stages``).

The append's steps are timed by wrapping them while ``instrument`` is active: the sealing
functions as the event log calls them, the store's own steps on its instance, the write
lock and log state on the backend's transaction class; the database calls by a proxy
around the driver cursor the append uses. Two floors come with them, per event, on the
same events:

- ``c_calls_only``: the C calls no implementation can skip (canonical JSON of the public and
  the personal part, AES-GCM over each, SHA-256 over the stored bytes), in a bare loop;
- the database's share: ``db_*`` rows (SQLite: ``COMMIT`` is the fsync of the WAL).

Wall microseconds per event (CPU for the whole append only); a stage's time includes the
stages it calls (``_write`` includes ``lock``, ``chain_batch`` and every ``db_*`` row but
the subject-key query's).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hermes_fed.store import SqlEventStore, event_log
from hermes_fed.store.postgres import PostgresTransaction
from hermes_fed.store.sqlite import SqliteTransaction

SEALING = ("check_envelope", "encode_batch", "seal_batch", "chain_batch")  # as event_log calls them
STORE = ("_stream_subjects_of", "_subject_keys", "_write")  # on the store instance
TRANSACTION = ("lock",)  # the write lock and the log state under it


class _Clock:
    """Wall time only: a CPU-clock read is a system call of about a microsecond, and the
    per-event stages would have carried four of them (a fifth of the append)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.wall[name] += time.perf_counter() - t

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        wall, perf = self.wall, time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:  # runs per event: no context manager
            t = perf()
            try:
                return fn(*args, **kwargs)
            finally:
                wall[name] += perf() - t
        return timed


class _Cursor:
    def __init__(self, cur: Any, clock: _Clock) -> None:
        self._cur, self._clock = cur, clock

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        words = sql.split()
        verb = " ".join(words[:2]) if words[0] == "BEGIN" else words[0]
        with self._clock.time(f"db_{verb.lower()}"):
            return self._cur.execute(sql, *args, **kwargs)

    def executemany(self, sql: str, rows: Any) -> Any:
        with self._clock.time("db_executemany"):
            return self._cur.executemany(sql, rows)

    @contextmanager
    def copy(self, sql: str) -> Iterator[Any]:
        with self._clock.time("db_copy"), self._cur.copy(sql) as copy:
            yield copy

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


class _Raw:
    def __init__(self, raw: Any, clock: _Clock) -> None:
        self._raw, self._clock = raw, clock

    def cursor(self, *args: Any, **kwargs: Any) -> _Cursor:
        return _Cursor(self._raw.cursor(*args, **kwargs), self._clock)

    def commit(self) -> None:
        with self._clock.time("db_commit"):
            self._raw.commit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


@contextmanager
def instrument(store: SqlEventStore) -> Iterator[_Clock]:
    """Time ``store``'s append steps while the block runs (the sealing functions and the
    transaction classes are patched for that long: time one store at a time)."""
    clock = _Clock()
    patched: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, label: str) -> None:
        patched.append((owner, name, owner.__dict__.get(name)))
        setattr(owner, name, clock.wrap(label, getattr(owner, name)))

    for name in SEALING:
        patch(event_log, name, name)
    for name in STORE:
        patch(store, name, name)
    for tx_class in (SqliteTransaction, PostgresTransaction):
        for name in TRANSACTION:
            patch(tx_class, name, name)
    engine = store.engine
    engine_raw = engine.raw_connection
    engine.raw_connection = lambda: _Raw(engine_raw(), clock)  # type: ignore[method-assign,return-value,assignment]
    try:
        yield clock
    finally:
        del engine.raw_connection
        for owner, name, original in reversed(patched):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


def c_calls_only(
    parts: Sequence[tuple[dict[str, Any], dict[str, Any]]], repeats: int = 3
) -> tuple[float, float]:
    """(wall, CPU) us per event of the unavoidable C calls on these (public, personal)
    parts: canonical JSON of both, AES-GCM over both, SHA-256 over the result; best of
    ``repeats`` loops."""
    tenant, subject = AESGCM(os.urandom(32)), AESGCM(os.urandom(32))
    nonce, aad, prev = os.urandom(12), os.urandom(16), bytes(32)
    n = max(len(parts), 1)
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        for public, personal in parts:
            data = tenant.encrypt(nonce, orjson.dumps(public, option=orjson.OPT_SORT_KEYS), aad)
            sealed = subject.encrypt(nonce, orjson.dumps(personal, option=orjson.OPT_SORT_KEYS), aad)
            prev = hashlib.sha256(prev + data + sealed).digest()
        best = min(best, ((time.perf_counter() - t) / n * 1e6, (time.process_time() - c) / n * 1e6))
    return best


def report(clock: _Clock, events: int) -> dict[str, float]:
    """Wall us per event of each stage, slowest first."""
    return {name: round(clock.wall[name] / events * 1e6, 2)
            for name in sorted(clock.wall, key=lambda k: -clock.wall[k])}
