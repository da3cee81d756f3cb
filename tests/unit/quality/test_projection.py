"""QualityProjection over a real event store (SQLite and PostgreSQL): invariant 5."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from hermes_fed.events import DEFAULT_CATALOG, NewEvent
from hermes_fed.projections import ProjectionRunner, table_rows
from hermes_fed.quality import read_model as rm
from hermes_fed.quality.config import QualityConfig
from hermes_fed.quality.projection import QualityProjection
from hermes_fed.quality.scoring import combined_score, implicit_score
from hermes_fed.quality.signals import TrajectorySignals
from hermes_fed.store import Keyring, SqlEventStore

from .conftest import edited, ev, feedback, judged, labeled, started, trajectory

pytestmark = pytest.mark.sql  # the quality read model lives in the log's database


def scenario() -> list[list[NewEvent]]:
    """Batches of a small tenant's log, covering every edge case the projection decides."""
    return [
        [started("s1"), ev(trajectory("t1", 2, 3, answer=6), "s1"),
         feedback("retry", "t1", "s1"),
         ev(trajectory("t2", 2, 3), "s1"), feedback("accept", "t2", "s1"),
         feedback("continue", "t2", "s1")],
        # feedback before its trajectory (out of order), then a trajectory never recorded
        [started("s2", "u-2"), feedback("accept", "t3", "s2", "u-2"),
         edited("t3", 0.2, "s2"), edited("t3", 0.6, "s2"),
         feedback("accept", "ghost", "s2", "u-2")],
        [ev(trajectory("t3", 7, 8), "s2", "u-2")],
        [judged("t2", "rules", 1.0, "s1"), judged("t2", "agreement", 0.5, "s1"),
         judged("t2", "rules", 0.8, "s1"),  # a re-judgement replaces the first
         feedback("error", "t1", "s1"), labeled("t3", -0.25, "s2")],
    ]


def rows_by_id(store: SqlEventStore) -> dict[str, dict[str, Any]]:
    with store.engine.connect() as conn:
        return {r["trajectory_id"]: dict(r) for r in
                conn.execute(sa.select(rm.trajectories)).mappings()}


@pytest.fixture
def store(make_store: Callable[..., Any]) -> SqlEventStore:
    # Written through the catalog without its limits: a log from before the schemas refused
    # out-of-range values (an edit ratio of 3, a judge score of 7) holds them forever, and
    # the fold must still clamp them.
    s: SqlEventStore = make_store(keyring=Keyring.generate("acme"),
                                  catalog=DEFAULT_CATALOG.without_limits())
    return s


def test_projection_scores_match_the_pure_functions(store: SqlEventStore) -> None:
    # Prepare
    for batch in scenario():
        store.append(batch)
    runner = ProjectionRunner(store, QualityProjection())
    # Execute
    runner.catch_up()
    rows = rows_by_id(store)
    # Assert: t1 retried, error -> 0.5 - 0.3 - 0.4 = -0.2
    assert rows["t1"]["implicit_score"] == pytest.approx(-0.2)
    assert rows["t1"]["tier"] == "bronze"
    # t2: accepted, no retry, continued -> 1.0; judges: mean(0.8, 0.5) = 0.65
    expected = combined_score(1.0, {"m": 0.65}).score
    assert rows["t2"]["combined_score"] == pytest.approx(expected)
    assert rows["t2"]["n_judges"] == 2
    # t3: feedback arrived first; largest edit 0.6 counts; a human label wins
    signals = TrajectorySignals("t3", True, accepted=True, edits=2, edit_ratio=0.6)
    assert rows["t3"]["implicit_score"] == pytest.approx(implicit_score(signals).score)
    assert rows["t3"]["combined_score"] == -0.25 and rows["t3"]["tier"] == "bronze"
    assert rows["t3"]["session_id"] == "session-s2" and rows["t3"]["signature"]
    # the ghost is an orphan: kept, never scored
    assert not rows["ghost"]["recorded"] and rows["ghost"]["combined_score"] is None
    with store.engine.connect() as conn:
        assert rm.orphan_ids(conn) == ["ghost"]
        pairs = conn.execute(sa.select(rm.preference_pairs)).all()
        candidates = rm.load_candidates(conn)
    assert [(p.rejected_id, p.chosen_id) for p in pairs] == [("t1", "t2")]
    assert sorted(c.trajectory_id for c in candidates) == ["t1", "t2", "t3"]


def test_inv5_rebuild_gives_identical_rows(store: SqlEventStore) -> None:
    # Prepare: caught up incrementally, one batch at a time
    runner = ProjectionRunner(store, QualityProjection())
    for batch in scenario():
        store.append(batch)
        runner.catch_up()
    before = table_rows(store.engine, rm.metadata)
    # Execute
    runner.rebuild()
    after = table_rows(store.engine, rm.metadata)
    # Assert
    assert before == after
    assert len(before["quality_trajectories"]) == 4


def test_config_change_rebuilds_with_new_weights(store: SqlEventStore) -> None:
    for batch in scenario():
        store.append(batch)
    ProjectionRunner(store, QualityProjection()).catch_up()
    config = QualityConfig.from_mapping({"implicit": {"error": -0.1}})
    # Execute: a runner over a different config sees a version change and rebuilds
    ProjectionRunner(store, QualityProjection(config))
    # Assert: t1 = 0.5 - 0.3 - 0.1
    assert rows_by_id(store)["t1"]["implicit_score"] == pytest.approx(0.1)


def test_erased_subject_is_never_selected_after_rebuild(store: SqlEventStore) -> None:
    for batch in scenario():
        store.append(batch)
    runner = ProjectionRunner(store, QualityProjection())
    runner.catch_up()
    # Execute
    store.erase_subject("u-2")
    runner.rebuild()
    # Assert: t3 (user u-2) keeps its score but has no text-derived columns left
    row = rows_by_id(store)["t3"]
    assert row["erased"] and row["signature"] is None and row["task_key"] is None
    with store.engine.connect() as conn:
        assert "t3" not in {c.trajectory_id for c in rm.load_candidates(conn)}


def test_inv5_bulk_rebuild_equals_event_by_event(store: SqlEventStore) -> None:
    # Prepare: the scenario plus training events in both orders and a re-judgement
    from hermes_fed.events import new_event
    from hermes_fed.events.training import (
        FederatedRoundTrained,
        TrainingRunCompleted,
        TrainingRunStarted,
    )
    from hermes_fed.quality.pipeline import record_selection, select_from_store
    from hermes_fed.quality.projection import EVENT_TYPES, rebuild_quality

    def run_event(kind: Any, run_id: str, sha: str) -> NewEvent:
        extra = {"config": {}} if kind is TrainingRunStarted else {"metrics": {}}
        return new_event(kind(run_id=run_id, base_model="tiny", parent_version=None,
                              dataset_manifest_sha256=sha, n_by_tier={}, **extra),
                         stream_id=f"training-{run_id}")

    runner = ProjectionRunner(store, QualityProjection())
    for batch in scenario():
        store.append(batch)
        runner.catch_up()
    manifest = select_from_store(store, 10, seed=0)
    store.append([run_event(TrainingRunStarted, "r1", manifest.sha256),
                  run_event(TrainingRunCompleted, "r1", manifest.sha256)])
    record_selection(store, manifest)  # the selection after its run completed
    store.append([new_event(FederatedRoundTrained(
        flower_run_id=2**64 - 1, round=1, parent_version="v1", dataset_manifest_sha256="",
        num_examples=20, n_by_tier={"silver": 20}, log_position=store.head()),
        stream_id="federated-1")])
    store.append([judged("t1", "rules", 0.1, "s1"), labeled("t2", 0.95, "s1"),
                  ev(trajectory("t4", 1, 1), "s3")])
    runner.catch_up()
    incremental = table_rows(store.engine, rm.metadata)
    # Execute
    count = rebuild_quality(store)
    bulk = table_rows(store.engine, rm.metadata)
    # Assert
    assert count == sum(1 for e in store.read() if e.type in EVENT_TYPES)
    assert bulk == incremental
    # t1 and t2 ask the same task with near-identical answers: t1 (lower score) was dropped;
    # t3 (labelled -0.25) is bronze, which the default selection never trains on
    assert manifest.trajectory_ids == ("t2",)
    assert {r[0] for r in incremental["quality_trajectories"] if r[-2] == "r1"} == {"t2"}
    assert [r[:2] for r in incremental["quality_training_runs"]] == [
        ("federated-18446744073709551615-1", "federated"), ("r1", "completed")]
    assert runner.checkpoint() == store.head() and runner.catch_up() == 0


def test_out_of_range_and_dangling_values_are_clamped_or_kept_never_fatal(
        store: SqlEventStore) -> None:
    # Prepare: values older logs hold (finite floats the schemas now refuse on append) but
    # the scales do not
    from hermes_fed.events import new_event
    from hermes_fed.events.training import TrainingDataSelected, TrainingRunCompleted

    store.append([
        started("s9"), ev(trajectory("t9", 1, 2), "s9"), edited("t9", 3.0, "s9"),
        judged("t9", "rules", 7.0, "s9"), labeled("nobody", 5.0, "s9"),
        new_event(TrainingRunCompleted(run_id="r0", base_model="b", parent_version=None,
                                       dataset_manifest_sha256="f" * 64, n_by_tier={},
                                       metrics={}), stream_id="training-r0"),
        new_event(TrainingDataSelected(selection_id="x", target_n=1, seed=0,
                                       manifest_sha256="e" * 64, n_by_tier={},
                                       items=[{"trajectory_id": "missing"}, {"bad": 1}]),
                  stream_id="selection-x"),
    ])
    # Execute
    ProjectionRunner(store, QualityProjection()).catch_up()
    rows = rows_by_id(store)
    # Assert
    assert rows["t9"]["edit_ratio"] == 1.0 and rows["t9"]["judge_score"] == 1.0
    assert rows["nobody"]["human_score"] == 1.0 and not rows["nobody"]["recorded"]
    assert "missing" not in rows and rows["t9"]["used_in_run"] is None


def random_log(seed: int, n: int = 300) -> list[NewEvent]:
    """A seeded, messy log: feedback before, after and without its trajectory, from other
    sessions than the recording, re-sent recordings, re-judgements, labels, repeated tasks
    (so retried-then-accepted pairs form), out-of-range values."""
    import random

    rng = random.Random(seed)
    sessions = [f"r{i}" for i in range(3)]
    tids = [f"t{i}" for i in range(14)]
    out: list[NewEvent] = []
    for _ in range(n):
        tid, session = rng.choice(tids), rng.choice(sessions)
        roll = rng.random()
        if roll < 0.25:
            a = rng.randrange(3)
            out.append(ev(trajectory(tid, a, 1, answer=rng.choice((a + 1, a + 2))), session))
        elif roll < 0.7:
            kinds = ("accept", "retry", "continue", "error") if int(tid[1:]) % 2 \
                else ("retry", "continue", "error")  # even ids are never accepted
            out.append(feedback(rng.choice(kinds), tid, session))
        elif roll < 0.8:
            out.append(edited(tid, rng.choice((0.0, 0.3, 0.9, 2.5)), session))
        elif roll < 0.92:
            out.append(judged(tid, rng.choice(("rules", "agreement")),
                              rng.choice((0.0, 0.25, 0.7, 1.0, 3.0)), session))
        else:
            out.append(labeled(tid, rng.choice((-1.0, -0.25, 0.5, 0.95, 4.0)), session))
    return out


@pytest.mark.parametrize("seed", range(1, 5))  # seeds whose logs form pairs
def test_inv5_bulk_rebuild_equals_event_by_event_on_random_logs(store: SqlEventStore,
                                                                 seed: int) -> None:
    from hermes_fed.quality.projection import rebuild_quality

    # Prepare: caught up event by event
    log = [*random_log(seed), started("r9")]  # the log ends on a type the fold skips
    for lo in range(0, len(log), 50):
        store.append(log[lo:lo + 50])
    ProjectionRunner(store, QualityProjection()).catch_up()
    incremental = table_rows(store.engine, rm.metadata)
    # Execute
    rebuild_quality(store)
    bulk = table_rows(store.engine, rm.metadata)
    # Assert: every table equal, checkpointed at the head, and the log exercised scores
    # and pairs
    assert bulk == incremental
    assert ProjectionRunner(store, QualityProjection()).checkpoint() == store.head()
    assert incremental["quality_preference_pairs"]
    assert any(r[-4] is not None for r in incremental["quality_trajectories"])
