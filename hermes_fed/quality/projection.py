"""``QualityProjection``: signals, scores, tiers, pairs and training use, from the log.

Every handler is a pure function of the event and the projection's own tables (invariant
5): dropping the tables and replaying gives identical rows. Scores depend on the
:class:`QualityConfig` too, so the projection's ``version`` includes a digest of it and the
runner rebuilds the read model when the configuration changes.

Erasure: after ``SubjectErased`` a replay reads the subject's trajectories without text, so
they keep their scores but lose their signature and are never selected again. The
``SubjectErased`` event itself does not name the subject's sessions in readable form, so
run ``hermes-fed quality rebuild`` after an erasure to apply it to this read model.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from hermes_fed.events import StoredEvent, canonical_json, to_micros
from hermes_fed.projections import Handler, Projection

from . import read_model as rm
from .config import QualityConfig
from .preference import SessionTrajectory, preference_pairs, task_key
from .scoring import combined_score, implicit_score
from .selection import candidate_signature
from .signals import FEEDBACK_TYPES, TrajectorySignals, apply_event
from .tiers import tier_of

SCHEMA_VERSION = 1
_SIGNAL_COLUMNS = ("recorded", "accepted", "retries", "edits", "edit_ratio", "continued",
                   "errors")


def config_digest(config: QualityConfig) -> str:
    from dataclasses import asdict
    return hashlib.sha256(canonical_json(asdict(config))).hexdigest()


class QualityProjection(Projection):
    """The quality read model (tables in :mod:`hermes_fed.quality.read_model`)."""

    name = "quality"
    metadata = rm.metadata

    def __init__(self, config: QualityConfig | None = None) -> None:
        self.config = config or QualityConfig()
        # Fits a 32-bit column: schema version in the high bits, config digest below.
        self.version = SCHEMA_VERSION * (1 << 24) + int(config_digest(self.config)[:6], 16)

    def handlers(self) -> Mapping[str, Handler]:
        out: dict[str, Handler] = {t: self._on_feedback for t in FEEDBACK_TYPES}
        out.update({
            "TrajectoryRecorded": self._on_recorded,
            "TrajectoryJudged": self._on_judged,
            "HumanLabeled": self._on_human,
            "TrainingDataSelected": self._on_selected,
            "TrainingRunStarted": self._on_run_started,
            "TrainingRunCompleted": self._on_run_completed,
            "TrainingRunFailed": self._on_run_failed,
        })
        return out

    # --- rows ---------------------------------------------------------------------------
    @staticmethod
    def _get(conn: sa.Connection, trajectory_id: str) -> dict[str, Any] | None:
        row = conn.execute(sa.select(rm.trajectories).where(
            rm.trajectories.c.trajectory_id == trajectory_id)).mappings().first()
        return None if row is None else dict(row)

    @staticmethod
    def _new_row(trajectory_id: str, session_id: str) -> dict[str, Any]:
        return {
            "trajectory_id": trajectory_id, "session_id": session_id, "recorded": False,
            "recorded_position": None, "recorded_at_us": None, "task_type": None,
            "task_key": None, "signature": None, "erased": False, "accepted": False,
            "retries": 0, "edits": 0, "edit_ratio": 0.0, "continued": False, "errors": 0,
            "implicit_score": None, "judge_score": None, "n_judges": 0, "human_score": None,
            "combined_score": None, "tier": None, "used_in_run": None, "used_at_us": None,
        }

    @staticmethod
    def _put(conn: sa.Connection, row: dict[str, Any], exists: bool) -> None:
        t = rm.trajectories
        if exists:
            conn.execute(t.update().where(t.c.trajectory_id == row["trajectory_id"])
                         .values(**{k: v for k, v in row.items() if k != "trajectory_id"}))
        else:
            conn.execute(t.insert().values(**row))

    def _rescore(self, row: dict[str, Any]) -> None:
        if not row["recorded"]:
            return  # orphans are never scored
        signals = TrajectorySignals(row["trajectory_id"],
                                    **{c: row[c] for c in _SIGNAL_COLUMNS})
        implicit = implicit_score(signals, self.config.implicit).score
        judges = {} if row["judge_score"] is None else {"mean": row["judge_score"]}
        combined = combined_score(implicit, judges, row["human_score"],
                                  self.config.combine).score
        row.update(implicit_score=implicit, combined_score=combined,
                   tier=str(tier_of(combined, self.config.tiers)))

    @staticmethod
    def _signals(row: dict[str, Any]) -> TrajectorySignals:
        return TrajectorySignals(row["trajectory_id"], **{c: row[c] for c in _SIGNAL_COLUMNS})

    def _refresh_pairs(self, conn: sa.Connection, session_id: str) -> None:
        t = rm.trajectories.c
        rows = conn.execute(
            sa.select(t.trajectory_id, t.recorded_position, t.task_key, t.retries, t.accepted)
            .where(t.session_id == session_id, t.recorded.is_(True), t.task_key.is_not(None))
        ).all()
        members = [SessionTrajectory(r[0], session_id, int(r[1]), r[2], r[3] > 0, bool(r[4]))
                   for r in rows]
        conn.execute(rm.preference_pairs.delete().where(
            rm.preference_pairs.c.session_id == session_id))
        pairs = preference_pairs(members)
        if pairs:
            conn.execute(rm.preference_pairs.insert(), [
                {"rejected_id": p.rejected_id, "chosen_id": p.chosen_id,
                 "session_id": p.session_id, "task_key": p.task_key} for p in pairs])

    # --- session events -------------------------------------------------------------------
    def _on_recorded(self, conn: sa.Connection, event: StoredEvent) -> None:
        data = event.data
        trajectory_id = data.get("trajectory_id")
        if not isinstance(trajectory_id, str):
            return
        row = self._get(conn, trajectory_id)
        exists = row is not None
        if row is not None and row["recorded"]:
            return  # the first recording of an id wins; a re-send changes nothing
        row = row or self._new_row(trajectory_id, event.stream_id)
        task, final = data.get("task"), data.get("final_response")
        erased = bool(event.erased_fields) or not isinstance(task, str) \
            or not isinstance(final, str)
        row.update(
            recorded=True, session_id=event.stream_id, recorded_position=event.position,
            recorded_at_us=to_micros(event.recorded_at),
            task_type=str(data.get("task_type") or ""), erased=erased,
            task_key=None if erased else task_key(str(task)),
            signature=None if erased else candidate_signature(str(task), str(final),
                                                              self.config.selection),
        )
        self._rescore(row)
        self._put(conn, row, exists)
        if not erased:
            self._refresh_pairs(conn, event.stream_id)

    def _on_feedback(self, conn: sa.Connection, event: StoredEvent) -> None:
        trajectory_id = event.data.get("trajectory_id")
        if not isinstance(trajectory_id, str):
            return
        row = self._get(conn, trajectory_id)
        exists = row is not None
        row = row or self._new_row(trajectory_id, event.stream_id)
        before = self._signals(row)
        after = apply_event(before, event.type, event.data)
        row.update({c: getattr(after, c) for c in _SIGNAL_COLUMNS})
        self._rescore(row)
        self._put(conn, row, exists)
        pairing_changed = (before.accepted != after.accepted
                           or (before.retries == 0) != (after.retries == 0))
        if row["recorded"] and pairing_changed:
            self._refresh_pairs(conn, row["session_id"])

    def _on_judged(self, conn: sa.Connection, event: StoredEvent) -> None:
        data = event.data
        trajectory_id, judge, score = data.get("trajectory_id"), data.get("judge"), \
            data.get("score")
        if not (isinstance(trajectory_id, str) and isinstance(judge, str)
                and isinstance(score, int | float) and math.isfinite(score)):
            return
        value = min(1.0, max(0.0, float(score)))  # judges score in [0, 1]
        j = rm.judgements
        updated = conn.execute(j.update().where(j.c.trajectory_id == trajectory_id,
                                                j.c.judge == judge)
                               .values(score=value, position=event.position)).rowcount
        if not updated:
            conn.execute(j.insert().values(trajectory_id=trajectory_id, judge=judge,
                                           score=value, position=event.position))
        mean, count = conn.execute(sa.select(sa.func.avg(j.c.score), sa.func.count())
                                   .where(j.c.trajectory_id == trajectory_id)).one()
        row = self._get(conn, trajectory_id)
        exists = row is not None
        row = row or self._new_row(trajectory_id, event.stream_id)
        row.update(judge_score=float(mean), n_judges=int(count))
        self._rescore(row)
        self._put(conn, row, exists)

    def _on_human(self, conn: sa.Connection, event: StoredEvent) -> None:
        trajectory_id, score = event.data.get("trajectory_id"), event.data.get("score")
        if not (isinstance(trajectory_id, str) and isinstance(score, int | float)
                and math.isfinite(score)):
            return
        row = self._get(conn, trajectory_id)
        exists = row is not None
        row = row or self._new_row(trajectory_id, event.stream_id)
        row["human_score"] = min(1.0, max(-1.0, float(score)))  # the latest label wins
        self._rescore(row)
        self._put(conn, row, exists)

    # --- training events ----------------------------------------------------------------
    def _mark_used(self, conn: sa.Connection, manifest_sha256: str) -> None:
        r = rm.training_runs.c
        run = conn.execute(sa.select(r.run_id, r.finished_at_us).where(
            r.manifest_sha256 == manifest_sha256, r.status == "completed")
            .order_by(r.finished_position).limit(1)).first()
        if run is None:
            return
        t, i = rm.trajectories.c, rm.selection_items.c
        ids = sa.select(i.trajectory_id).where(i.manifest_sha256 == manifest_sha256)
        conn.execute(rm.trajectories.update()
                     .where(t.trajectory_id.in_(ids), t.used_in_run.is_(None))
                     .values(used_in_run=run[0], used_at_us=run[1]))

    def _on_selected(self, conn: sa.Connection, event: StoredEvent) -> None:
        d = event.data
        sha = d.get("manifest_sha256")
        items = d.get("items")
        if not isinstance(sha, str) or not isinstance(items, list):
            return
        s = rm.selections.c
        if conn.execute(sa.select(s.manifest_sha256).where(s.manifest_sha256 == sha)).first():
            return  # the same manifest recorded twice
        good = [x for x in items if isinstance(x, Mapping)
                and isinstance(x.get("trajectory_id"), str)]
        unique = {str(x["trajectory_id"]): x for x in good}
        conn.execute(rm.selections.insert().values(
            manifest_sha256=sha, selection_id=str(d.get("selection_id", "")),
            target_n=int(d.get("target_n", 0)), seed=int(d.get("seed", 0)),
            n_items=len(unique), position=event.position))
        if unique:
            conn.execute(rm.selection_items.insert(), [
                {"manifest_sha256": sha, "trajectory_id": tid, "tier": str(x.get("tier", "")),
                 "weight": float(x.get("weight", 0.0))} for tid, x in sorted(unique.items())])
        self._mark_used(conn, sha)  # a run may have completed before the selection arrived

    def _upsert_run(self, conn: sa.Connection, event: StoredEvent, status: str,
                    started: bool) -> str | None:
        run_id, sha = event.data.get("run_id"), event.data.get("dataset_manifest_sha256")
        if not isinstance(run_id, str) or not isinstance(sha, str):
            return None
        r = rm.training_runs
        when = {"started_position": event.position,
                "started_at_us": to_micros(event.recorded_at)} if started else {
            "finished_position": event.position, "finished_at_us": to_micros(event.recorded_at)}
        existing = conn.execute(sa.select(r.c.status).where(r.c.run_id == run_id)).first()
        if existing:
            if started and existing[0] != "started":
                status = existing[0]  # a late Started never undoes a Completed/Failed
            conn.execute(r.update().where(r.c.run_id == run_id)
                         .values(status=status, manifest_sha256=sha, **when))
        else:
            conn.execute(r.insert().values(run_id=run_id, status=status, manifest_sha256=sha,
                                           **when))
        return sha

    def _on_run_started(self, conn: sa.Connection, event: StoredEvent) -> None:
        self._upsert_run(conn, event, "started", started=True)

    def _on_run_completed(self, conn: sa.Connection, event: StoredEvent) -> None:
        sha = self._upsert_run(conn, event, "completed", started=False)
        if sha is not None:
            self._mark_used(conn, sha)

    def _on_run_failed(self, conn: sa.Connection, event: StoredEvent) -> None:
        self._upsert_run(conn, event, "failed", started=False)
