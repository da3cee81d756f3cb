"""Orchestration: run judges over new trajectories, select, record, decide to train.

Thin glue between the event store, :class:`QualityProjection` and the pure functions; every
decision is made by the pure modules and every result is written back as an event.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from hermes_fed.errors import JudgeError
from hermes_fed.events import NewEvent, new_event
from hermes_fed.events.session import TrajectoryRecorded
from hermes_fed.projections import ProjectionRunner, checkpoints
from hermes_fed.store import SqlEventStore
from hermes_fed.store.sqlite import create_tables

from . import read_model as rm
from .config import QualityConfig
from .judges import Judge
from .projection import QualityProjection, rebuild_quality
from .selection import SelectionManifest, select_training_data
from .trigger import AutoTrigger, TriggerDecision

log = logging.getLogger(__name__)


def quality_runner(store: SqlEventStore, config: QualityConfig | None = None) -> ProjectionRunner:
    """A caught-up runner of the quality projection over ``store``.

    A missing read model, or one built under another configuration, is rebuilt in bulk
    (:func:`rebuild_quality`) rather than event by event; then the runner catches up.
    """
    projection = QualityProjection(config)
    create_tables(checkpoints.metadata, store.engine)
    with store.engine.connect() as conn:
        version = conn.execute(sa.select(checkpoints.c.version).where(
            checkpoints.c.name == projection.name)).scalar()
    if version != projection.version:
        rebuild_quality(store, projection.config)
    runner = ProjectionRunner(store, projection)
    runner.catch_up()
    return runner


@dataclass(frozen=True, slots=True)
class JudgeRunReport:
    judged: int
    abstained: int
    failed: int
    skipped_erased: int


def judge_new_trajectories(store: SqlEventStore, judges: Sequence[Judge], *,
                           config: QualityConfig | None = None, batch: int = 500,
                           limit: int | None = None) -> JudgeRunReport:
    """Run every judge over recorded trajectories it has not judged yet.

    Verdicts are appended as ``TrajectoryJudged`` to the trajectory's session stream; a
    judge that raises :class:`JudgeError` on one trajectory is logged and counted, and the
    run goes on (a flaky endpoint must not block the offline judges).
    """
    runner = quality_runner(store, config)
    names = [j.name for j in judges]
    with runner.engine.connect() as conn:
        done = {(r[0], r[1]) for r in conn.execute(
            sa.select(rm.judgements.c.trajectory_id, rm.judgements.c.judge)
            .where(rm.judgements.c.judge.in_(names))).all()}
        t = rm.trajectories.c
        # Read the log from the first trajectory some judge has not judged yet.
        counts = (sa.select(rm.judgements.c.trajectory_id).where(
            rm.judgements.c.judge.in_(names)).group_by(rm.judgements.c.trajectory_id)
            .having(sa.func.count() >= len(set(names))))
        start = conn.execute(sa.select(sa.func.min(t.recorded_position)).where(
            t.recorded.is_(True), t.erased.is_(False),
            t.trajectory_id.not_in(counts))).scalar()
    judged = abstained = failed = erased = 0
    pending: list[NewEvent] = []
    seen = 0
    if start is None:
        return JudgeRunReport(0, 0, 0, 0)
    for event in store.read(after=int(start) - 1):
        if event.type != "TrajectoryRecorded":
            continue
        if event.erased_fields:
            erased += 1
            continue
        trajectory = event.record()
        if not isinstance(trajectory, TrajectoryRecorded):
            continue
        for judge in judges:
            if (trajectory.trajectory_id, judge.name) in done:
                continue
            try:
                verdict = judge.judge(trajectory)
            except JudgeError as exc:
                failed += 1
                log.warning("event=judge_failed judge=%s trajectory=%s error=%s", judge.name,
                            trajectory.trajectory_id, exc)
                continue
            if verdict is None:
                abstained += 1
                continue
            pending.append(new_event(verdict.to_event(), stream_id=event.stream_id,
                                     metadata={"actor": f"judge:{judge.name}"}))
            done.add((trajectory.trajectory_id, judge.name))
            judged += 1
        seen += 1
        if len(pending) >= batch:
            store.append(pending)
            pending = []
        if limit is not None and seen >= limit:
            break
    if pending:
        store.append(pending)
    runner.catch_up()
    return JudgeRunReport(judged, abstained, failed, erased)


def select_from_store(store: SqlEventStore, target_n: int, seed: int,
                      config: QualityConfig | None = None,
                      only: Collection[str] | None = None, *,
                      exclude_used: bool = True) -> SelectionManifest:
    """Select training data from the projection's current candidates (does not record);
    with ``only``, from those candidates whose ids it holds (a train split, say), so no
    budget is spent on trajectories the caller would drop afterwards; ``exclude_used``
    as :func:`~hermes_fed.quality.selection.select_training_data`."""
    runner = quality_runner(store, config)
    with runner.engine.connect() as conn:
        candidates = rm.load_candidates(conn)
    if only is not None:
        keep = set(only)
        candidates = [c for c in candidates if c.trajectory_id in keep]
    return select_training_data(candidates, target_n, seed, config, exclude_used=exclude_used)


def record_selection(store: SqlEventStore, manifest: SelectionManifest) -> int:
    """Append the manifest as ``TrainingDataSelected``; recording it twice is a no-op.

    Returns the event's position (the original one on a repeat).
    """
    event = new_event(manifest.to_event(), stream_id=f"selection-{manifest.selection_id}",
                      event_id=manifest.event_id, metadata={"actor": "quality.select"})
    return store.append([event])[0].position


def decide_training(store: SqlEventStore, now: datetime,
                    config: QualityConfig | None = None) -> TriggerDecision:
    """Evaluate the AutoTrigger on the caught-up projection."""
    cfg = config or QualityConfig()
    runner = quality_runner(store, cfg)
    with runner.engine.connect() as conn:
        inputs = rm.trigger_inputs(conn, now, cfg)
    return AutoTrigger(cfg.trigger).decide(inputs)
