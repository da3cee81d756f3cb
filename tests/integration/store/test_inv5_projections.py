"""Invariant 5: read models are pure. A handler per event type, the checkpoint stored in the
same transaction as the rows, catch-up, rebuild gives identical rows, a version bump
rebuilds, and an erased subject is absent after a rebuild."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import sqlalchemy as sa

from hermes_fed.events import NewEvent, StoredEvent
from hermes_fed.projections import Handler, Projection, ProjectionRunner, checkpoints, table_rows
from hermes_fed.store import Keyring, SqlEventStore

from .helpers import MakeStore, accepted, raw, session_started, trajectory

pytestmark = pytest.mark.sql  # projections keep their tables in the log's database


class SessionsProjection(Projection):
    """Two tables: sessions (who, which model, how many events) and trajectories."""

    name = "test_sessions"

    def __init__(self, version: int = 1, fail_on: str | None = None) -> None:
        self.version = version
        self.fail_on = fail_on  # a trajectory id whose handler raises (crash injection)
        self.metadata = sa.MetaData()
        self.sessions = sa.Table(
            "t_sessions",
            self.metadata,
            sa.Column("stream_id", sa.String(200), primary_key=True),
            sa.Column("user_ref", sa.String(100), nullable=True),
            sa.Column("model_version", sa.String(100)),
            sa.Column("accepted", sa.Integer, nullable=False),
        )
        self.trajectories = sa.Table(
            "t_trajectories",
            self.metadata,
            sa.Column("trajectory_id", sa.String(100), primary_key=True),
            sa.Column("stream_id", sa.String(200), nullable=False),
            sa.Column("task", sa.Text, nullable=True),
            sa.Column("position", sa.BigInteger, nullable=False),
        )

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "SessionStarted": self._started,
            "TrajectoryRecorded": self._trajectory,
            "OutputAccepted": self._accepted,
        }

    def _started(self, conn: sa.Connection, e: StoredEvent) -> None:
        model = e.data["model_version"] + (f"@v{self.version}" if self.version > 1 else "")
        conn.execute(
            self.sessions.insert().values(
                stream_id=e.stream_id, user_ref=e.data["user_ref"], model_version=model, accepted=0
            )
        )

    def _trajectory(self, conn: sa.Connection, e: StoredEvent) -> None:
        if e.data["trajectory_id"] == self.fail_on:
            raise RuntimeError("injected handler failure")
        conn.execute(
            self.trajectories.insert().values(
                trajectory_id=e.data["trajectory_id"],
                stream_id=e.stream_id,
                task=e.data["task"],
                position=e.position,
            )
        )

    def _accepted(self, conn: sa.Connection, e: StoredEvent) -> None:
        conn.execute(
            self.sessions.update()
            .where(self.sessions.c.stream_id == e.stream_id)
            .values(accepted=self.sessions.c.accepted + 1)
        )


def _populate(store: SqlEventStore, sessions: int = 6, start: int = 0) -> None:
    for s in range(start, start + sessions):
        stream, user = f"session-{s}", f"user-{s % 3}"
        store.append(
            [session_started(stream, user), trajectory(stream, f"task {s}"), *accepted(stream, s % 4)]
        )
        store.append([NewEvent(stream, "SessionEnded", {})])  # a type without a handler


def _checkpoint_row(store: SqlEventStore, name: str) -> list[tuple[object, ...]]:
    return raw(store, "SELECT position, version FROM projection_checkpoints WHERE name = :n", {"n": name})


def test_inv5_catch_up_applies_handlers_and_checkpoints(make_store: MakeStore) -> None:
    # Prepare
    store = make_store(keyring=Keyring.generate("acme"))
    _populate(store)
    projection = SessionsProjection()

    # Execute
    runner = ProjectionRunner(store, projection, batch_size=7)
    read = runner.catch_up()

    # Assert
    rows = table_rows(store.engine, projection.metadata)
    assert read == store.head()
    assert runner.checkpoint() == store.head()
    assert _checkpoint_row(store, "test_sessions") == [(store.head(), 1)]
    assert rows["t_sessions"][0] == ("session-0", "user-0", "m-1", 0)
    assert sorted(r[3] for r in rows["t_sessions"]) == sorted(s % 4 for s in range(6))
    assert len(rows["t_trajectories"]) == 6
    assert runner.catch_up() == 0  # nothing new


def test_inv5_catch_up_picks_up_new_events_only(make_store: MakeStore) -> None:
    # Prepare
    store = make_store(keyring=Keyring.generate("acme"))
    _populate(store, 3)
    projection = SessionsProjection()
    runner = ProjectionRunner(store, projection)
    runner.catch_up()
    head_before = store.head()

    # Execute
    _populate(store, 2, start=3)
    read = runner.catch_up()

    # Assert
    assert read == store.head() - head_before
    assert len(table_rows(store.engine, projection.metadata)["t_sessions"]) == 5


def test_inv5_drop_and_rebuild_gives_identical_rows(make_store: MakeStore) -> None:
    # Prepare: built incrementally, in small batches, interleaved with appends
    store = make_store(keyring=Keyring.generate("acme"))
    projection = SessionsProjection()
    runner = ProjectionRunner(store, projection, batch_size=3)
    for start in range(0, 12, 4):
        _populate(store, 4, start=start)
        runner.catch_up()
    incremental = table_rows(store.engine, projection.metadata)

    # Execute
    read = runner.rebuild()
    rebuilt = table_rows(store.engine, projection.metadata)

    # Assert
    assert read == store.head()
    assert rebuilt == incremental
    assert len(rebuilt["t_sessions"]) == 12


def test_inv5_checkpoint_commits_with_the_rows(make_store: MakeStore) -> None:
    # Prepare: a handler that fails on the 4th trajectory, mid-batch
    store = make_store(keyring=Keyring.generate("acme"))
    _populate(store, 6)
    crashing = SessionsProjection(fail_on=None)
    runner = ProjectionRunner(store, crashing, batch_size=1000)
    failing_id = [e.data["trajectory_id"] for e in store.read() if e.type == "TrajectoryRecorded"][3]
    crashing.fail_on = failing_id

    # Execute
    with pytest.raises(RuntimeError, match="injected"):
        runner.catch_up()

    # Assert: neither rows nor checkpoint of the failed batch were kept
    assert runner.checkpoint() == 0
    assert table_rows(store.engine, crashing.metadata) == {"t_sessions": [], "t_trajectories": []}

    # Execute: the bug is fixed; catching up again gives what a clean build gives
    crashing.fail_on = None
    runner.catch_up()
    after_crash = table_rows(store.engine, crashing.metadata)
    runner.rebuild()
    assert table_rows(store.engine, crashing.metadata) == after_crash


def test_inv5_smaller_batches_keep_earlier_batches_after_a_crash(make_store: MakeStore) -> None:
    # Prepare
    store = make_store(keyring=Keyring.generate("acme"))
    _populate(store, 6)
    projection = SessionsProjection()
    runner = ProjectionRunner(store, projection, batch_size=5)
    failing = [e for e in store.read() if e.type == "TrajectoryRecorded"][3]
    projection.fail_on = failing.data["trajectory_id"]

    # Execute
    with pytest.raises(RuntimeError):
        runner.catch_up()

    # Assert: the checkpoint stopped at the last committed batch, before the failing event
    checkpoint = runner.checkpoint()
    assert 0 < checkpoint < failing.position and checkpoint % 5 == 0
    stored = {r[0] for r in table_rows(store.engine, projection.metadata)["t_trajectories"]}
    assert all(e.position <= checkpoint for e in store.read() if e.data.get("trajectory_id") in stored)


def test_inv5_version_bump_triggers_a_rebuild(make_store: MakeStore) -> None:
    # Prepare
    store = make_store(keyring=Keyring.generate("acme"))
    _populate(store, 4)
    ProjectionRunner(store, SessionsProjection(version=1)).catch_up()

    # Execute: the same projection, version 2 (its handler writes model names differently)
    v2 = SessionsProjection(version=2)
    runner = ProjectionRunner(store, v2)

    # Assert: rebuilt at construction, with v2 rows only
    rows = table_rows(store.engine, v2.metadata)
    assert {r[2] for r in rows["t_sessions"]} == {"m-1@v2"}
    assert _checkpoint_row(store, "test_sessions") == [(store.head(), 2)]
    assert runner.catch_up() == 0


def test_inv5_same_version_does_not_rebuild(make_store: MakeStore) -> None:
    store = make_store(keyring=Keyring.generate("acme"))
    _populate(store, 2)
    first = SessionsProjection()
    ProjectionRunner(store, first).catch_up()
    raw(store, "UPDATE t_sessions SET accepted = 99")  # a marker a rebuild would erase
    ProjectionRunner(store, SessionsProjection())
    assert {r[3] for r in table_rows(store.engine, first.metadata)["t_sessions"]} == {99}


def test_inv5_rebuild_after_erasure_excludes_the_subject(make_store: MakeStore) -> None:
    # Prepare
    ring = Keyring.generate("acme")
    store = make_store(keyring=ring)
    _populate(store, 6)  # users user-0, user-1, user-2
    projection = SessionsProjection()
    runner = ProjectionRunner(store, projection)
    runner.catch_up()
    assert "user-1" in repr(table_rows(store.engine, projection.metadata))

    # Execute
    store.erase_subject("user-1")
    runner.rebuild()
    rows = table_rows(store.engine, projection.metadata)

    # Assert: no trace of the subject's personal fields; the other subjects are intact
    assert "user-1" not in repr(rows)
    assert [r for r in rows["t_sessions"] if r[0] in ("session-1", "session-4")] == [
        ("session-1", None, "m-1", 1),
        ("session-4", None, "m-1", 0),
    ]
    assert all(r[2] is None for r in rows["t_trajectories"] if r[1] in ("session-1", "session-4"))
    assert "task 0" in repr(rows) and "user-2" in repr(rows)
    assert store.verify().ok


def test_inv5_checkpoints_table_is_shared_by_projections(make_store: MakeStore) -> None:
    store = make_store(keyring=Keyring.generate("acme"))
    _populate(store, 2)

    class Other(SessionsProjection):
        name = "test_other"

    ProjectionRunner(store, SessionsProjection()).catch_up()
    other = ProjectionRunner(store, Other())
    assert other.checkpoint() == 0
    with store.engine.connect() as conn:
        names = {r[0] for r in conn.execute(sa.select(checkpoints.c.name))}
    assert names == {"test_sessions"}
