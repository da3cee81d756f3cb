"""The quality read model: its tables and the queries the pipeline runs on them.

The tables hold no trajectory text: the task is kept as a hash (``task_key``) and the task +
final response as a MinHash signature, enough for pairing and near-duplicate removal.
Written only by :class:`~hermes_fed.quality.projection.QualityProjection` (invariant 5).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from hermes_fed.events import to_micros

from .config import QualityConfig
from .selection import Candidate
from .tiers import TIER_ORDER
from .trigger import TriggerInputs

metadata = sa.MetaData()

trajectories = sa.Table(
    "quality_trajectories", metadata,
    sa.Column("trajectory_id", sa.String(200), primary_key=True),
    sa.Column("session_id", sa.String(200), nullable=False),
    sa.Column("recorded", sa.Boolean, nullable=False),
    sa.Column("recorded_position", sa.BigInteger),
    sa.Column("recorded_at_us", sa.BigInteger),
    sa.Column("task_type", sa.String(200)),
    sa.Column("task_key", sa.String(64)),
    sa.Column("signature", sa.LargeBinary),
    sa.Column("erased", sa.Boolean, nullable=False),
    sa.Column("accepted", sa.Boolean, nullable=False),
    sa.Column("retries", sa.Integer, nullable=False),
    sa.Column("edits", sa.Integer, nullable=False),
    sa.Column("edit_ratio", sa.Float, nullable=False),
    sa.Column("continued", sa.Boolean, nullable=False),
    sa.Column("errors", sa.Integer, nullable=False),
    sa.Column("implicit_score", sa.Float),
    sa.Column("judge_score", sa.Float),
    sa.Column("n_judges", sa.Integer, nullable=False),
    sa.Column("human_score", sa.Float),
    sa.Column("prior_score", sa.Float),  # curated imports: TrajectoryCurated
    sa.Column("tool_error", sa.Boolean, nullable=False),  # the last tool result failed
    sa.Column("combined_score", sa.Float),
    sa.Column("tier", sa.String(16)),
    sa.Column("used_in_run", sa.String(200)),
    sa.Column("used_at_us", sa.BigInteger),
    sa.Index("ix_quality_trajectories_session", "session_id"),
    sa.Index("ix_quality_trajectories_position", "recorded_position"),
)

judgements = sa.Table(
    "quality_judgements", metadata,
    sa.Column("trajectory_id", sa.String(200), primary_key=True),
    sa.Column("judge", sa.String(100), primary_key=True),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),
)

preference_pairs = sa.Table(
    "quality_preference_pairs", metadata,
    sa.Column("rejected_id", sa.String(200), primary_key=True),
    sa.Column("chosen_id", sa.String(200), nullable=False),
    sa.Column("session_id", sa.String(200), nullable=False),
    sa.Column("task_key", sa.String(64), nullable=False),
    sa.Index("ix_quality_pairs_session", "session_id"),
)

selections = sa.Table(
    "quality_selections", metadata,
    sa.Column("manifest_sha256", sa.String(64), primary_key=True),
    sa.Column("selection_id", sa.String(100), nullable=False),
    sa.Column("target_n", sa.Integer, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("n_items", sa.Integer, nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),
)

selection_items = sa.Table(
    "quality_selection_items", metadata,
    sa.Column("manifest_sha256", sa.String(64), primary_key=True),
    sa.Column("trajectory_id", sa.String(200), primary_key=True),
    sa.Column("tier", sa.String(16), nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
)

#: ``status`` of a federated round's local training (``FederatedRoundTrained``): a run for
#: the trigger, never one that marks trajectories used. Its ``started_position`` is the log
#: position its data was read up to; a local run's statuses are started/completed/failed.
FEDERATED = "federated"
_DONE = ("completed", FEDERATED)

training_runs = sa.Table(
    "quality_training_runs", metadata,
    sa.Column("run_id", sa.String(200), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("manifest_sha256", sa.String(64), nullable=False),
    sa.Column("started_position", sa.BigInteger),
    sa.Column("started_at_us", sa.BigInteger),
    sa.Column("finished_position", sa.BigInteger),
    sa.Column("finished_at_us", sa.BigInteger),
)


# --- queries --------------------------------------------------------------------------------
_scored = sa.and_(trajectories.c.recorded.is_(True), trajectories.c.combined_score.is_not(None))


def load_candidates(conn: sa.Connection) -> list[Candidate]:
    """Scored, recorded, unerased trajectories with a signature, as selection candidates."""
    t = trajectories.c
    rows = conn.execute(
        sa.select(t.trajectory_id, t.task_type, t.combined_score, t.signature, t.used_in_run)
        .where(_scored, t.erased.is_(False), t.signature.is_not(None))
        .order_by(t.trajectory_id)
    ).all()
    return [Candidate(r[0], r[1] or "", float(r[2]), bytes(r[3]), r[4] is not None)
            for r in rows]


def orphan_ids(conn: sa.Connection) -> list[str]:
    """Trajectories named by feedback but never recorded."""
    t = trajectories.c
    return list(conn.execute(sa.select(t.trajectory_id).where(t.recorded.is_(False))
                             .order_by(t.trajectory_id)).scalars())


@dataclass(frozen=True, slots=True)
class LastTraining:
    """The latest training the node's log shows: a completed local run or a federated
    round's local training (``kind`` ``local`` / ``federated``)."""

    run_id: str
    kind: str
    data_position: int  # trajectories recorded after this log position are new
    finished_position: int
    finished_at_us: int


def last_training(conn: sa.Connection) -> LastTraining | None:
    """The latest completed local run or federated round, by the position of its record."""
    r = training_runs.c
    row = conn.execute(
        sa.select(r.run_id, r.status, r.started_position, r.finished_position,
                  r.finished_at_us)
        .where(r.status.in_(_DONE)).order_by(r.finished_position.desc()).limit(1)
    ).first()
    if row is None:
        return None
    federated = row[1] == FEDERATED
    finished = int(row[3])
    return LastTraining(
        run_id=str(row[0]), kind="federated" if federated else "local",
        data_position=int(row[2]) if federated and row[2] is not None else finished,
        finished_position=finished, finished_at_us=int(row[4]))


def _mean_count(conn: sa.Connection, *where: sa.ColumnElement[bool]) -> tuple[float | None, int]:
    t = trajectories.c
    row = conn.execute(sa.select(sa.func.avg(t.combined_score), sa.func.count())
                       .where(_scored, *where)).one()
    return (None if row[0] is None else float(row[0])), int(row[1])


def trigger_inputs(conn: sa.Connection, now: datetime,
                   config: QualityConfig | None = None) -> TriggerInputs:
    """The AutoTrigger's inputs, read from the projection.

    The last run is the latest completed local run or federated round's local training
    (:func:`last_training`). "New" means recorded after it by log position (after the
    position a federated round's data was read up to); the baseline is the mean combined
    score of trajectories recorded in ``baseline_window_days`` before it.
    """
    cfg = (config or QualityConfig()).trigger
    t = trajectories.c
    last = last_training(conn)
    after = last.data_position if last else 0
    new_where = t.recorded_position > after
    current_mean, current_n = _mean_count(conn, new_where)
    hq = conn.execute(sa.select(sa.func.count()).where(
        _scored, new_where, t.combined_score >= cfg.high_quality_score)).scalar_one()
    baseline_mean: float | None = None
    baseline_n = 0
    last_at = None
    if last is not None:
        window_start = last.finished_at_us - int(cfg.baseline_window_days * 86_400 * 1_000_000)
        baseline_mean, baseline_n = _mean_count(
            conn, t.recorded_position <= after, t.recorded_at_us >= window_start)
        last_at = datetime.fromtimestamp(last.finished_at_us / 1e6, now.tzinfo)
    return TriggerInputs(now=now, last_run_at=last_at, new_scored=current_n,
                         new_high_quality=int(hq), current_mean=current_mean,
                         current_n=current_n, baseline_mean=baseline_mean,
                         baseline_n=baseline_n)


@dataclass(frozen=True, slots=True)
class FlywheelVelocity:
    """How fast a tenant's flywheel turns (issue 4): per window ending at ``now``."""

    window_days: float
    trajectories: int
    trajectories_per_day: float
    high_quality_rate: float
    tier_histogram: dict[str, int]
    orphans: int
    preference_pairs: int
    used_in_training: int
    median_days_to_training: float | None

    def to_json(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


def flywheel_velocity(conn: sa.Connection, now: datetime, window_days: float = 7.0,
                      config: QualityConfig | None = None) -> FlywheelVelocity:
    """Trajectories/day, high-quality rate and tier histogram over the window; the median
    time from a trajectory's recording to its use in a completed training run (all time)."""
    cfg = config or QualityConfig()
    t = trajectories.c
    since = to_micros(now - timedelta(days=window_days))
    rows = conn.execute(sa.select(t.tier, t.combined_score)
                        .where(_scored, t.recorded_at_us >= since)).all()
    tiers = Counter(r[0] for r in rows)
    hq = sum(1 for r in rows if r[1] >= cfg.trigger.high_quality_score)
    lags = sorted((r[1] - r[0]) / 86_400e6 for r in conn.execute(
        sa.select(t.recorded_at_us, t.used_at_us).where(t.used_at_us.is_not(None))).all())
    median = None
    if lags:
        mid = len(lags) // 2
        median = lags[mid] if len(lags) % 2 else (lags[mid - 1] + lags[mid]) / 2
    return FlywheelVelocity(
        window_days=window_days, trajectories=len(rows),
        trajectories_per_day=len(rows) / window_days if window_days else math.nan,
        high_quality_rate=hq / len(rows) if rows else 0.0,
        tier_histogram={str(tier): tiers.get(str(tier), 0) for tier in TIER_ORDER},
        orphans=len(orphan_ids(conn)),
        preference_pairs=int(conn.execute(
            sa.select(sa.func.count()).select_from(preference_pairs)).scalar_one()),
        used_in_training=len(lags),
        median_days_to_training=median,
    )
