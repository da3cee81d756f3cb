"""The pipeline end to end over a real store: judge -> select -> record -> train -> trigger."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from hermes_fed.events import new_event, utcnow
from hermes_fed.events.training import FederatedRoundTrained, TrainingRunCompleted
from hermes_fed.quality import read_model as rm
from hermes_fed.quality.config import QualityConfig
from hermes_fed.quality.judges import AgreementJudge, RuleBasedJudge
from hermes_fed.quality.pipeline import (
    decide_training,
    judge_new_trajectories,
    quality_runner,
    record_selection,
    select_from_store,
)
from hermes_fed.store import Keyring, SqlEventStore

from .conftest import ev, feedback, started, trajectory

pytestmark = pytest.mark.sql  # the quality read model lives in the log's database


def fill(store: SqlEventStore, n: int, *, wrong_every: int = 0, offset: int = 0) -> None:
    """``n`` single-trajectory sessions; every ``wrong_every``-th answer is wrong and retried."""
    batch = []
    for i in range(offset, offset + n):
        wrong = wrong_every and i % wrong_every == 0
        s = f"s{i}"
        batch += [started(s), ev(trajectory(f"t{i:04d}", i, 2 * i + 1,
                                            answer=-1 if wrong else None), s),
                  feedback("retry" if wrong else "accept", f"t{i:04d}", s)]
    store.append(batch)


def complete_run(store: SqlEventStore, run_id: str, sha: str) -> None:
    record = TrainingRunCompleted(  # type: ignore[call-arg]
        run_id=run_id, base_model="tiny", parent_version=None, dataset_manifest_sha256=sha,
        n_by_tier={}, metrics={})
    store.append([new_event(record, stream_id=f"training-{run_id}")])


@pytest.fixture
def store(make_store: Callable[..., Any]) -> SqlEventStore:
    s: SqlEventStore = make_store(keyring=Keyring.generate("acme"))
    return s


def test_judges_write_events_once(store: SqlEventStore) -> None:
    # Prepare
    fill(store, 6, wrong_every=3)
    judges = [RuleBasedJudge(), AgreementJudge()]
    # Execute
    first = judge_new_trajectories(store, judges)
    second = judge_new_trajectories(store, judges)
    # Assert: 6 trajectories x 2 judges, then nothing new
    assert (first.judged, first.failed) == (12, 0)
    assert second.judged == 0
    runner = quality_runner(store)
    with runner.engine.connect() as conn:
        scores = dict(conn.execute(sa.select(rm.judgements.c.trajectory_id,
                                             rm.judgements.c.score)
                                   .where(rm.judgements.c.judge == "agreement")).all())
    assert scores["t0000"] == 0.0 and scores["t0001"] == 1.0  # t0000 answered -1


def test_select_record_train_then_reselect_excludes_used(store: SqlEventStore) -> None:
    # Prepare
    fill(store, 40)
    manifest = select_from_store(store, 100, seed=1)
    # Execute
    position = record_selection(store, manifest)
    again = record_selection(store, manifest)  # idempotent (invariant 3)
    complete_run(store, "r1", manifest.sha256)
    fill(store, 5, offset=40)
    second = select_from_store(store, 100, seed=1)
    # Assert
    assert position == again and len(manifest.items) == 40
    assert set(second.trajectory_ids) == {f"t{i:04d}" for i in range(40, 45)}
    assert second.excluded_used == 40
    runner = quality_runner(store)
    with runner.engine.connect() as conn:
        used = conn.execute(sa.select(sa.func.count()).where(
            rm.trajectories.c.used_in_run == "r1")).scalar_one()
        velocity = rm.flywheel_velocity(conn, utcnow() + timedelta(seconds=1))
    assert used == 40
    assert velocity.used_in_training == 40 and velocity.trajectories == 45
    # accepted, no retry: 0.5 + 0.3 + 0.1 = 0.9 -> platinum
    assert velocity.tier_histogram["platinum"] == 45 and velocity.high_quality_rate == 1.0


def test_trigger_reads_the_projection(store: SqlEventStore) -> None:
    # Prepare: a lower volume threshold, first run done, then new data
    config = QualityConfig.from_mapping({"trigger": {"min_new": 10, "drop_min_samples": 5}})
    fill(store, 12)
    first = decide_training(store, utcnow(), config)
    manifest = select_from_store(store, 50, seed=0, config=config)
    record_selection(store, manifest)
    complete_run(store, "r1", manifest.sha256)
    fill(store, 10, offset=12, wrong_every=1)  # all retried: quality collapses
    # Execute
    too_soon = decide_training(store, utcnow() + timedelta(days=1), config)
    later = decide_training(store, utcnow() + timedelta(days=3, seconds=5), config)
    # Assert
    assert (first.train, first.rule) == (True, "volume")
    assert (too_soon.train, too_soon.rule) == (False, "min_gap")
    assert (later.train, later.rule) == (True, "quality_drop"), later.reason
    assert later.inputs.new_scored == 10 and later.inputs.baseline_n == 12


def federated_round(store: SqlEventStore, round_: int, sha: str, log_position: int,
                    at: datetime) -> None:
    record = FederatedRoundTrained(
        flower_run_id=7, round=round_, parent_version="v1-abc", dataset_manifest_sha256=sha,
        num_examples=12, n_by_tier={"platinum": 12}, log_position=log_position)
    store.append([new_event(record, stream_id=f"federated-7-{round_}", occurred_at=at)])


def test_a_federated_round_is_the_last_run_and_marks_nothing_used(
        store: SqlEventStore) -> None:
    # Prepare: 12 trajectories read by round 1 of a cycle, 3 recorded while it trained,
    # its record (at the node's clock, a day ahead of the wall), then 10 more, all retried
    config = QualityConfig.from_mapping({"trigger": {"min_new": 10, "drop_min_samples": 5}})
    fill(store, 12)
    manifest = select_from_store(store, 50, seed=0, config=config, exclude_used=True)
    record_selection(store, manifest)  # recorded (`quality select --record`), as a run's
    read_up_to = store.head()
    fill(store, 3, offset=12)
    node_clock = utcnow() + timedelta(days=1)
    federated_round(store, 1, manifest.sha256, read_up_to, node_clock)
    fill(store, 10, offset=15, wrong_every=1)
    # Execute
    too_soon = decide_training(store, node_clock + timedelta(days=1), config)
    later = decide_training(store, node_clock + timedelta(days=3, seconds=5), config)
    again = select_from_store(store, 50, seed=0, config=config, exclude_used=True)
    # Assert: the round is the last run, at its own time; new = recorded after its data
    assert (too_soon.train, too_soon.rule) == (False, "min_gap")
    assert too_soon.inputs.last_run_at is not None
    assert abs(too_soon.inputs.last_run_at - node_clock) < timedelta(milliseconds=1)
    assert too_soon.inputs.new_scored == 13 and too_soon.inputs.new_high_quality == 3
    assert (later.train, later.rule) == (True, "quality_drop"), later.reason
    assert later.inputs.baseline_n == 12
    # ...and used nothing up: the next round's selection still offers the same 12 (+13 new)
    assert set(manifest.trajectory_ids) <= set(again.trajectory_ids)
    assert again.excluded_used == 0
    with quality_runner(store, config).engine.connect() as conn:
        used = conn.execute(sa.select(sa.func.count()).where(
            rm.trajectories.c.used_in_run.is_not(None))).scalar_one()
        last = rm.last_training(conn)
    assert used == 0
    assert last is not None and (last.run_id, last.kind) == ("federated-7-1", "federated")


def test_the_latest_of_a_local_run_and_a_federated_round_is_the_last_run(
        store: SqlEventStore) -> None:
    # Prepare: a federated round, then a local run on new data, then another round
    fill(store, 12)
    federated_round(store, 1, "", store.head(), utcnow())
    fill(store, 4, offset=12)
    manifest = select_from_store(store, 50, seed=0)
    record_selection(store, manifest)
    complete_run(store, "r1", manifest.sha256)
    with quality_runner(store).engine.connect() as conn:
        after_local = rm.last_training(conn)
    federated_round(store, 1, "", 1, utcnow())  # a re-delivered round 1 changes nothing
    with quality_runner(store).engine.connect() as conn:
        still_local = rm.last_training(conn)
        used = conn.execute(sa.select(sa.func.count()).where(
            rm.trajectories.c.used_in_run == "r1")).scalar_one()
    federated_round(store, 2, "", store.head(), utcnow())
    # Execute
    inputs = decide_training(store, utcnow() + timedelta(seconds=1)).inputs
    # Assert
    assert after_local is not None and (after_local.run_id, after_local.kind) == ("r1", "local")
    assert still_local == after_local
    assert used == 16  # the local run marks its manifest used, the rounds never did
    assert inputs.new_scored == 0 and inputs.last_run_at is not None
