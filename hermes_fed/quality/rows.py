"""Where the quality fold keeps its rows: in SQL (incremental) or in memory (fast rebuild).

:class:`~hermes_fed.quality.projection.QualityFold` is written once against
:class:`QualityRows`. :class:`SqlRows` applies each event inside the projection runner's
transaction; :class:`MemoryRows` folds a whole log in memory and writes the tables with
bulk inserts (``COPY`` on PostgreSQL), scoring each trajectory once and computing MinHash
signatures in one vectorised pass. Tests assert both give identical tables (invariant 5),
on a hand-made log and on seeded random ones.
"""

from __future__ import annotations

import gc
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from . import read_model as rm
from .config import SelectionConfig
from .minhash import minhash_signatures
from .preference import PreferencePair, SessionTrajectory, preference_pairs
from .selection import candidate_signature

Row = dict[str, Any]

_t = rm.trajectories
_GET = sa.select(_t).where(_t.c.trajectory_id == sa.bindparam("q_tid"))
_UPDATE = _t.update().where(_t.c.trajectory_id == sa.bindparam("q_tid"))
_MEMBERS = sa.select(_t.c.trajectory_id, _t.c.recorded_position, _t.c.task_key, _t.c.retries,
                     _t.c.accepted).where(_t.c.session_id == sa.bindparam("q_session"),
                                          _t.c.recorded.is_(True), _t.c.task_key.is_not(None))
_j = rm.judgements
_JUDGE_UPDATE = _j.update().where(_j.c.trajectory_id == sa.bindparam("q_tid"),
                                  _j.c.judge == sa.bindparam("q_judge"))
_JUDGE_SCORES = sa.select(_j.c.score).where(_j.c.trajectory_id == sa.bindparam("q_tid"))


def judge_mean(scores: Sequence[float]) -> float:
    """Mean of a trajectory's judge scores; ``fsum`` is exactly rounded, so the order the
    database returns them in cannot change the result (SqlRows and MemoryRows agree)."""
    return math.fsum(scores) / len(scores)


@contextmanager
def fewer_collections(young: int = 50_000) -> Iterator[None]:
    """Run the cyclic GC's young-generation pass every ``young`` allocations instead of
    every 700 while a bulk rebuild builds and writes its rows (in bench/quality a third of
    the fold's CPU time, and a fifth to a third of a flush's, went to collections that
    found nothing); cycles are still collected, in larger batches. The threshold is
    process-wide, restored on exit."""
    before = gc.get_threshold()
    gc.set_threshold(max(young, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


@dataclass(frozen=True, slots=True)
class PendingSignature:
    """A signature MemoryRows computes later, in one batch."""

    text: str


class QualityRows(ABC):
    """The storage operations of the quality fold."""

    @abstractmethod
    def get(self, trajectory_id: str) -> Row | None: ...

    @abstractmethod
    def put(self, row: Row, exists: bool) -> None: ...

    @abstractmethod
    def signature(self, task: str, final_response: str) -> bytes | PendingSignature: ...

    def defer_scoring(self, score: Callable[[Row], None]) -> bool:
        """Offer to call ``score(row)`` once per row before the rows are written, instead of
        the fold scoring after every event; ``True`` if these rows take the offer."""
        return False

    @abstractmethod
    def judge(self, trajectory_id: str, judge: str, score: float,
              position: int) -> tuple[float, int]:
        """Upsert one judge's latest score; return ``(mean, count)`` over the judges."""

    @abstractmethod
    def pairs_changed(self, session_id: str) -> None:
        """The session's pairing inputs changed: recompute its preference pairs (now, or
        before the rows are read)."""

    @abstractmethod
    def has_selection(self, sha: str) -> bool: ...

    @abstractmethod
    def add_selection(self, row: Row, items: list[Row]) -> None: ...

    @abstractmethod
    def run_status(self, run_id: str) -> str | None: ...

    @abstractmethod
    def put_run(self, run_id: str, values: Row, exists: bool) -> None: ...

    @abstractmethod
    def first_completed_run(self, sha: str) -> tuple[str, int] | None:
        """``(run_id, finished_at_us)`` of the earliest completed run on manifest ``sha``."""

    @abstractmethod
    def mark_used(self, sha: str, run_id: str, used_at_us: int) -> None: ...


class SqlRows(QualityRows):
    """Rows in the read-model tables, through one connection (the runner's transaction)."""

    def __init__(self, conn: sa.Connection, selection: SelectionConfig) -> None:
        self.conn = conn
        self.selection = selection

    def get(self, trajectory_id: str) -> Row | None:
        row = self.conn.execute(_GET, {"q_tid": trajectory_id}).mappings().first()
        return None if row is None else dict(row)

    def put(self, row: Row, exists: bool) -> None:
        if exists:
            values = {k: v for k, v in row.items() if k != "trajectory_id"}
            self.conn.execute(_UPDATE, {"q_tid": row["trajectory_id"], **values})
        else:
            self.conn.execute(_t.insert(), row)

    def signature(self, task: str, final_response: str) -> bytes:
        return candidate_signature(task, final_response, self.selection)

    def judge(self, trajectory_id: str, judge: str, score: float,
              position: int) -> tuple[float, int]:
        params = {"q_tid": trajectory_id, "q_judge": judge, "score": score,
                  "position": position}
        if not self.conn.execute(_JUDGE_UPDATE, params).rowcount:
            self.conn.execute(_j.insert(), {"trajectory_id": trajectory_id, "judge": judge,
                                            "score": score, "position": position})
        scores = [float(s) for s in self.conn.execute(
            _JUDGE_SCORES, {"q_tid": trajectory_id}).scalars()]
        return judge_mean(scores), len(scores)

    def pairs_changed(self, session_id: str) -> None:
        rows = self.conn.execute(_MEMBERS, {"q_session": session_id}).all()
        pairs = preference_pairs(
            [SessionTrajectory(r[0], session_id, int(r[1]), r[2], r[3] > 0, bool(r[4]))
             for r in rows])
        p = rm.preference_pairs
        self.conn.execute(p.delete().where(p.c.session_id == session_id))
        if pairs:
            self.conn.execute(p.insert(), [_pair_row(x) for x in pairs])

    def has_selection(self, sha: str) -> bool:
        s = rm.selections.c
        return self.conn.execute(sa.select(s.manifest_sha256)
                                 .where(s.manifest_sha256 == sha)).first() is not None

    def add_selection(self, row: Row, items: list[Row]) -> None:
        self.conn.execute(rm.selections.insert(), row)
        if items:
            self.conn.execute(rm.selection_items.insert(), items)

    def run_status(self, run_id: str) -> str | None:
        r = rm.training_runs.c
        status = self.conn.execute(sa.select(r.status).where(r.run_id == run_id)).scalar()
        return None if status is None else str(status)

    def put_run(self, run_id: str, values: Row, exists: bool) -> None:
        r = rm.training_runs
        if exists:
            self.conn.execute(r.update().where(r.c.run_id == run_id).values(**values))
        else:
            self.conn.execute(r.insert().values(run_id=run_id, **values))

    def first_completed_run(self, sha: str) -> tuple[str, int] | None:
        r = rm.training_runs.c
        row = self.conn.execute(sa.select(r.run_id, r.finished_at_us).where(
            r.manifest_sha256 == sha, r.status == "completed")
            .order_by(r.finished_position).limit(1)).first()
        return None if row is None else (str(row[0]), int(row[1]))

    def mark_used(self, sha: str, run_id: str, used_at_us: int) -> None:
        i = rm.selection_items.c
        ids = sa.select(i.trajectory_id).where(i.manifest_sha256 == sha)
        self.conn.execute(_t.update().where(_t.c.trajectory_id.in_(ids),
                                            _t.c.used_in_run.is_(None))
                          .values(used_in_run=run_id, used_at_us=used_at_us))


def _pair_row(pair: PreferencePair) -> Row:
    return {"rejected_id": pair.rejected_id, "chosen_id": pair.chosen_id,
            "session_id": pair.session_id, "task_key": pair.task_key}


class MemoryRows(QualityRows):
    """The same rows in dictionaries; :meth:`flush` bulk-inserts them into empty tables."""

    def __init__(self, selection: SelectionConfig) -> None:
        self.selection = selection
        self.trajectories: dict[str, Row] = {}
        self.judgements: dict[str, dict[str, tuple[float, int]]] = {}
        self.dirty_sessions: set[str] = set()
        self.selections: dict[str, tuple[Row, list[Row]]] = {}
        self.runs: dict[str, Row] = {}
        self._score: Callable[[Row], None] | None = None

    def defer_scoring(self, score: Callable[[Row], None]) -> bool:
        self._score = score
        return True

    def get(self, trajectory_id: str) -> Row | None:
        # The live row, not a copy: the fold mutates it and put()s it straight back.
        return self.trajectories.get(trajectory_id)

    def put(self, row: Row, exists: bool) -> None:
        if not exists:  # an existing row is the live one get() returned, already here
            self.trajectories[row["trajectory_id"]] = row

    def signature(self, task: str, final_response: str) -> PendingSignature:
        return PendingSignature(f"{task}\n{final_response}")

    def judge(self, trajectory_id: str, judge: str, score: float,
              position: int) -> tuple[float, int]:
        scores = self.judgements.setdefault(trajectory_id, {})
        scores[judge] = (score, position)
        values = [s for s, _ in scores.values()]
        return judge_mean(values), len(values)

    def pairs_changed(self, session_id: str) -> None:
        self.dirty_sessions.add(session_id)  # computed once, in flush

    def _pairing_members(self) -> list[SessionTrajectory]:
        """The pairing inputs of the sessions that can have a pair: members of the dirty
        sessions, by the session each row is in now (feedback from another stream before
        its recording moves a row), and only sessions with a retried, unaccepted member
        (:func:`preference_pairs` pairs nothing else)."""
        live = [r for r in self.trajectories.values()
                if r["recorded"] and r["task_key"] is not None
                and r["session_id"] in self.dirty_sessions]
        waiting = {r["session_id"] for r in live if r["retries"] > 0 and not r["accepted"]}
        return [SessionTrajectory(r["trajectory_id"], r["session_id"],
                                  int(r["recorded_position"]), r["task_key"],
                                  r["retries"] > 0, bool(r["accepted"]))
                for r in live if r["session_id"] in waiting]

    def has_selection(self, sha: str) -> bool:
        return sha in self.selections

    def add_selection(self, row: Row, items: list[Row]) -> None:
        self.selections[row["manifest_sha256"]] = (row, items)

    def run_status(self, run_id: str) -> str | None:
        run = self.runs.get(run_id)
        return None if run is None else str(run["status"])

    def put_run(self, run_id: str, values: Row, exists: bool) -> None:
        self.runs.setdefault(run_id, {
            "run_id": run_id, "started_position": None, "started_at_us": None,
            "finished_position": None, "finished_at_us": None}).update(values)

    def first_completed_run(self, sha: str) -> tuple[str, int] | None:
        done = [r for r in self.runs.values()
                if r["manifest_sha256"] == sha and r["status"] == "completed"]
        if not done:
            return None
        first = min(done, key=lambda r: r["finished_position"])
        return str(first["run_id"]), int(first["finished_at_us"])

    def mark_used(self, sha: str, run_id: str, used_at_us: int) -> None:
        for item in self.selections[sha][1] if sha in self.selections else ():
            row = self.trajectories.get(item["trajectory_id"])
            if row is not None and row["used_in_run"] is None:
                row.update(used_in_run=run_id, used_at_us=used_at_us)

    def flush(self, conn: sa.Connection, chunk: int = 5000) -> None:
        """Score every row once (when the fold deferred scoring to it), compute the pairs
        and pending signatures in one pass each, and bulk-insert every table."""
        with fewer_collections():
            self._flush(conn, chunk)

    def _flush(self, conn: sa.Connection, chunk: int) -> None:
        if self._score is not None:
            score = self._score
            for row in self.trajectories.values():
                score(row)
        pairs = [_pair_row(p) for p in preference_pairs(self._pairing_members())]
        pending = [r for r in self.trajectories.values()
                   if isinstance(r["signature"], PendingSignature)]
        signatures = minhash_signatures([r["signature"].text for r in pending],
                                        self.selection.minhash_permutations,
                                        self.selection.shingle_size)
        blob, width = signatures.astype("<u8").tobytes(), 8 * signatures.shape[1]
        for i, row in enumerate(pending):
            row["signature"] = blob[i * width:(i + 1) * width]
        judgements = [{"trajectory_id": tid, "judge": judge, "score": s, "position": p}
                      for tid, by_judge in self.judgements.items()
                      for judge, (s, p) in by_judge.items()]
        tables: list[tuple[sa.Table, list[Row]]] = [
            (rm.trajectories, list(self.trajectories.values())),
            (rm.judgements, judgements),
            (rm.preference_pairs, pairs),
            (rm.selections, [row for row, _ in self.selections.values()]),
            (rm.selection_items, [i for _, items in self.selections.values() for i in items]),
            (rm.training_runs, list(self.runs.values())),
        ]
        for table, rows in tables:
            bulk_insert(conn, table, rows, chunk)


def bulk_insert(conn: sa.Connection, table: sa.Table, rows: Sequence[Row],
                chunk: int = 5000) -> None:
    """Insert ``rows``: on SQLite as plain tuples through the driver's ``executemany``
    (SQLAlchemy's per-row parameter processing is most of the cost there), on PostgreSQL
    through psycopg as one binary ``COPY`` in the connection's transaction, elsewhere by
    SQLAlchemy in chunks.
    """
    if not rows:
        return
    names = [c.name for c in table.columns]
    values = itemgetter(*names)
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(n) for n in names)
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" for _ in names)
        sql = f"INSERT INTO {quote(table.name)} ({columns}) VALUES ({marks})"
        for lo in range(0, len(rows), chunk):
            conn.exec_driver_sql(sql, list(map(values, rows[lo:lo + chunk])))
        return
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        translate = conn.get_execution_options().get("schema_translate_map") or {}
        schema = translate.get(table.schema, table.schema)
        name = quote(table.name) if schema is None else f"{quote(schema)}.{quote(table.name)}"
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {name} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([_pg_copy_type(c.type) for c in table.columns])
            for row in map(values, rows):
                copy.write_row(row)
        return
    for lo in range(0, len(rows), chunk):
        conn.execute(table.insert(), list(rows[lo:lo + chunk]))


def _pg_copy_type(column_type: sa.types.TypeEngine[Any]) -> str:
    """The PostgreSQL type name binary ``COPY`` writes a column's values as."""
    for kind, name in ((sa.Boolean, "bool"), (sa.BigInteger, "int8"), (sa.Integer, "int4"),
                       (sa.Float, "float8"), (sa.LargeBinary, "bytea"), (sa.String, "text")):
        if isinstance(column_type, kind):
            return name
    raise TypeError(f"no COPY type for {column_type!r}")
