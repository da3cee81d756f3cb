"""The node's answer to ``query.ab_stats``: per-arm sufficient statistics, never outcomes.

The coordinator's ``ABTestCreated`` reaches the node in the query message's ``config``
(:class:`AbQuery`). Three kinds of question (``mode``):

* ``online``: users were assigned to arms by the node's ``AssignVariant`` (the keyed hash
  of :mod:`tenant_node.assignment`, recorded as ``VariantAssigned`` on ``abtest-<id>``), or
  by the agent naming ``variant``/``ab_test_id`` in ``SessionStarted``. The unit is the
  user (sessions of one user are not independent); its outcome ``y`` is the mean quality
  score (``combined_score`` of the quality read model) of its sessions that name the test,
  and its CUPED covariate ``x`` the mean score of its sessions before it was assigned
  (users without a pre-period get the mean of those who have one, which keeps CUPED
  unbiased because ``x`` is still independent of the arm; Deng et al. 2013).
* ``offline``: the candidate and the current adapter (``None``: the base model) scored on
  the node's held-out split (the split of ``tenant_node.training_pipeline.plan_training``:
  ``split_heldout`` of the trajectory ids, same fraction and seed); per example ``d =
  loglik(candidate) - loglik(current)`` with the current score as covariate (paired, see
  ``hermes_fed.abtest.paired``).
* ``version``: the quality of one model version's sessions since a time (the production
  version's per-round figure for the negative-feedback-loop guard).

Replies go through :func:`tenant_node.egress.build_reply` only: cells ``ab.control``,
``ab.treatment``, ``ab.paired`` or ``ab.version`` (``.n``, ``.sum``, ``.sumsq``) and, for
cells that are not suppressed, their covariate sums as metrics ``<cell>.sum_x``,
``<cell>.sum_x2``, ``<cell>.sum_xy``. A cell with ``0 < n < k_min`` leaves nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa

from hermes_fed.abtest.arms import ArmStats
from hermes_fed.errors import FederationError
from tenant_node.assignment import Arm
from tenant_node.egress import Cell, EgressPolicy, ReplyPayload

logger = logging.getLogger(__name__)

MODES = ("online", "offline", "version")
CONTROL, TREATMENT, PAIRED, VERSION = "ab.control", "ab.treatment", "ab.paired", "ab.version"
COVARIATE_SUFFIXES = ("sum_x", "sum_x2", "sum_xy")


@dataclass(frozen=True, slots=True)
class AbQuery:
    """What the coordinator asks, from the message's ``config`` ConfigRecord."""

    mode: str
    ab_test_id: str = ""
    control: str = ""
    treatment: str = ""
    traffic_split: float = 0.1
    version: str = ""
    since_us: int = 0
    r: int = 8
    alpha: float = 16.0
    max_length: int = 256

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise FederationError(f"ab_stats mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "online" and not (self.ab_test_id and self.control and self.treatment):
            raise FederationError("ab_stats online needs ab-test-id, control and treatment")
        if self.mode == "version" and not self.version:
            raise FederationError("ab_stats version needs version")
        if not 0.0 < self.traffic_split < 1.0:
            raise FederationError(f"ab_stats traffic-split must be in (0, 1), got {self.traffic_split!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AbQuery:
        try:
            return cls(
                mode=str(config["mode"]),
                ab_test_id=str(config.get("ab-test-id", "")),
                control=str(config.get("control", "")),
                treatment=str(config.get("treatment", "")),
                traffic_split=float(config.get("traffic-split", 0.1)),
                version=str(config.get("version", "")),
                since_us=int(config.get("since-us", 0)),
                r=int(config.get("r", 8)),
                alpha=float(config.get("alpha", 16.0)),
                max_length=int(config.get("max-length", 256)),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise FederationError(f"ab_stats config is missing or bad: {exc!r}") from None


def arms_for(query: AbQuery) -> list[Arm]:
    """The arms an agent passes to ``AssignVariant`` for this test (treatment gets the split)."""
    return [Arm("control", 1.0 - query.traffic_split), Arm("treatment", query.traffic_split)]


def _arm_of(variant: object, query: AbQuery) -> str | None:
    if variant in ("control", query.control):
        return CONTROL
    if variant in ("treatment", query.treatment):
        return TREATMENT
    return None


def session_scores(store: Any, quality: Any = None) -> dict[str, float]:
    """Mean ``combined_score`` of each session's scored trajectories (quality read model)."""
    from hermes_fed.quality import read_model as rm
    from hermes_fed.quality.pipeline import quality_runner

    runner = quality_runner(store, quality)
    t = rm.trajectories
    query = sa.select(t.c.session_id, t.c.combined_score).where(
        t.c.recorded.is_(True), t.c.erased.is_(False), t.c.combined_score.is_not(None))
    sums: dict[str, list[float]] = defaultdict(list)
    with runner.engine.connect() as conn:
        for session_id, score in conn.execute(query):
            sums[str(session_id)].append(float(score))
    return {s: float(np.mean(v)) for s, v in sums.items()}


@dataclass(frozen=True, slots=True)
class _Session:
    stream_id: str
    user_ref: str
    ab_test_id: str | None
    variant: str | None
    model_version: str
    position: int
    occurred_at: datetime


def _read_sessions(store: Any, ab_test_id: str | None) -> tuple[list[_Session], dict[str, tuple[str, int]]]:
    """Readable ``SessionStarted`` events, and ``VariantAssigned`` of ``ab_test_id`` by user."""
    sessions: list[_Session] = []
    assigned: dict[str, tuple[str, int]] = {}
    for event in store.read():
        if event.erased:
            continue  # an erased subject's sessions leave the statistics (crypto-shredding)
        data = event.data
        if event.type == "SessionStarted":
            sessions.append(_Session(event.stream_id, str(data["user_ref"]), data.get("ab_test_id"),
                                     data.get("variant"), str(data.get("model_version", "")),
                                     event.position, event.occurred_at))
        elif event.type == "VariantAssigned" and data.get("ab_test_id") == ab_test_id:
            assigned.setdefault(str(data["user_ref"]), (str(data["variant"]), event.position))
    return sessions, assigned


def online_arm_stats(store: Any, query: AbQuery, quality: Any = None) -> dict[str, ArmStats]:
    """Per-arm `ArmStats` of users' mean session quality (module docstring: ``online``)."""
    scores = session_scores(store, quality)
    sessions, assigned = _read_sessions(store, query.ab_test_id)
    outcome: dict[str, list[float]] = defaultdict(list)
    pre: dict[str, list[float]] = defaultdict(list)
    arm: dict[str, str] = {}
    for user, (variant, _) in assigned.items():
        if (a := _arm_of(variant, query)) is not None:
            arm[user] = a
    # the pre-period ends at the user's assignment or first test session, whichever is first
    cutoff = {user: position for user, (_, position) in assigned.items()}
    for s in sessions:
        if s.ab_test_id == query.ab_test_id:
            cutoff[s.user_ref] = min(cutoff.get(s.user_ref, s.position), s.position)
    for s in sessions:
        score = scores.get(s.stream_id)
        if s.ab_test_id == query.ab_test_id:
            if s.user_ref not in arm and (a := _arm_of(s.variant, query)) is not None:
                arm[s.user_ref] = a
            if score is not None:
                outcome[s.user_ref].append(score)
        elif s.ab_test_id is None and score is not None and s.position < cutoff.get(s.user_ref, 0):
            pre[s.user_ref].append(score)
    units = [u for u in sorted(arm) if outcome.get(u)]
    y = {u: float(np.mean(outcome[u])) for u in units}
    x_known = {u: float(np.mean(pre[u])) for u in units if pre.get(u)}
    fill = float(np.mean(list(x_known.values()))) if x_known else None
    out: dict[str, ArmStats] = {}
    for cell in (CONTROL, TREATMENT):
        members = [u for u in units if arm[u] == cell]
        ys = [y[u] for u in members]
        if fill is None or not members:
            out[cell] = ArmStats.from_values(ys)
        else:
            out[cell] = ArmStats.from_values(ys, [x_known.get(u, fill) for u in members])
    logger.info("ab_test_id=%s users=%d with_pre_period=%d", query.ab_test_id, len(units), len(x_known))
    return out


def version_stats(store: Any, query: AbQuery, quality: Any = None) -> ArmStats:
    """Session quality of ``query.version``'s sessions that started at or after ``since_us``."""
    from hermes_fed.events import to_micros

    scores = session_scores(store, quality)
    sessions, _ = _read_sessions(store, None)
    values = [scores[s.stream_id] for s in sessions
              if s.model_version == query.version and s.stream_id in scores
              and to_micros(s.occurred_at) >= query.since_us]
    return ArmStats.from_values(values)


def heldout_trajectories(store: Any, heldout_fraction: float, split_seed: int) -> list[Mapping[str, Any]]:
    """The node's held-out trajectories: the split ``plan_training`` keeps out of training,
    less those with broken tool use (a candidate that imitates the agent's failed calls
    better is not a better candidate; they never train either)."""
    from hermes_fed.quality.judges import broken_trajectories
    from hermes_fed.training.dataset import split_heldout
    from tenant_node.training_pipeline import load_trajectories

    trajectories = load_trajectories(store)
    split = split_heldout(sorted(trajectories), heldout_fraction, split_seed)
    broken = broken_trajectories({t: trajectories[t] for t in split.heldout})
    return [trajectories[t] for t in split.heldout if t not in broken]


def paired_differences(base_model: str, heldout: Sequence[Mapping[str, Any]],
                       candidate: Mapping[str, np.ndarray],
                       current: Mapping[str, np.ndarray] | None, query: AbQuery) -> ArmStats:
    """``d = loglik(candidate) - loglik(current)`` per held-out example, ``x`` = current's."""
    from hermes_fed.training.config import LoraTrainingConfig
    from hermes_fed.training.evaluation import evaluate

    config = LoraTrainingConfig(r=query.r, alpha=query.alpha, max_length=query.max_length,
                                device="cpu")
    cand = evaluate(base_model, candidate, heldout, config=config, max_new_tokens=1)
    cand_ll = [float(e.adapter_loglik) for e in cand.examples if e.adapter_loglik is not None]
    if current is None:
        cur_ll = [e.base_loglik for e in cand.examples]
    else:
        cur = evaluate(base_model, current, heldout, config=config, max_new_tokens=1)
        cur_ll = [float(e.adapter_loglik) for e in cur.examples if e.adapter_loglik is not None]
    if len(cand_ll) != len(cur_ll):
        raise FederationError("offline A/B: the two evaluations kept different examples")
    diffs = [c - b for c, b in zip(cand_ll, cur_ll, strict=True)]
    return ArmStats.from_values(diffs, cur_ll)


def cells_of(name: str, stats: ArmStats, policy: EgressPolicy) -> tuple[Cell, dict[str, float]]:
    """The egress cell of ``stats`` and, unless it will be suppressed, its covariate sums."""
    cell = Cell(name, stats.n, stats.sum, stats.sumsq)
    covariates: dict[str, float] = {}
    if stats.has_covariate and not 0 < stats.n < policy.k_min:
        for suffix in COVARIATE_SUFFIXES:
            covariates[f"{name}.{suffix}"] = float(getattr(stats, suffix))
    return cell, covariates


def reply_payload(stats: Mapping[str, ArmStats], policy: EgressPolicy) -> ReplyPayload:
    """The `ReplyPayload` of named `ArmStats` (cells + covariate metrics; k_min applies)."""
    cells: list[Cell] = []
    metrics: dict[str, float] = {}
    for name, arm in stats.items():
        cell, covariates = cells_of(name, arm, policy)
        cells.append(cell)
        metrics.update(covariates)
    return ReplyPayload(cells=cells, metrics=metrics)


def answer(content: Any, node_config: Mapping[str, Any], policy: EgressPolicy) -> ReplyPayload:
    """Answer one ``query.ab_stats`` message's content on this node (the ClientApp calls this)."""
    from hermes_fed.store import Keyring, open_store
    from tenant_node.local_round import NodeSettings

    settings = NodeSettings.from_node_config(node_config)
    query = AbQuery.from_config(content.config_records["config"])
    keyring = Keyring.from_file(settings.keyring) if settings.keyring else None
    store = open_store(settings.store, settings.tenant_id, keyring=keyring)
    try:
        if query.mode == "online":
            return reply_payload(online_arm_stats(store, query, settings.quality()), policy)
        if query.mode == "version":
            return reply_payload({VERSION: version_stats(store, query, settings.quality())},
                                 policy)
        heldout = heldout_trajectories(store, settings.heldout_fraction, settings.split_seed)
    finally:
        store.close()
    arrays = content.array_records
    candidate = {k: a.numpy() for k, a in arrays["candidate"].items()}
    current = {k: a.numpy() for k, a in arrays["current"].items()} if "current" in arrays else None
    if not heldout:
        return reply_payload({PAIRED: ArmStats()}, policy)
    return reply_payload({PAIRED: paired_differences(settings.base_model, heldout, candidate,
                                                     current, query)}, policy)
