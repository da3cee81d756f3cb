"""The node's answer to ``query.ab_stats``: per-arm sufficient statistics, never outcomes.

The coordinator's ``ABTestCreated`` reaches the node in the query message's ``config``
(:class:`AbQuery`). Three kinds of question (``mode``):

* ``online``: users were assigned to arms by the node's ``AssignVariant`` (the keyed hash
  of :mod:`tenant_node.ingest.assignment`, recorded as ``VariantAssigned`` on ``abtest-<id>``), or
  by the agent naming ``variant``/``ab_test_id`` in ``SessionStarted``. The unit is the
  user (sessions of one user are not independent); its outcome ``y`` is the mean quality
  score (``combined_score`` of the quality read model) of its sessions that name the test,
  and its CUPED covariate ``x`` the mean score of its sessions before it was assigned
  (users without a pre-period get the mean of those who have one, which keeps CUPED
  unbiased because ``x`` is still independent of the arm; Deng et al. 2013).
* ``offline``: the candidate and the current adapter (``None``: the base model) scored on
  the node's held-out split (the split of ``tenant_node.local_training.plan_training``:
  ``split_heldout`` of the trajectory ids, same fraction and seed); per example ``d =
  loglik(candidate) - loglik(current)`` with the current score as covariate (paired, see
  ``hermes_fed.abtest.paired``).
* ``version``: the quality of one model version's sessions since a time (the production
  version's per-round figure for the negative-feedback-loop guard).

Replies go through :func:`tenant_node.flower.egress.build_reply` only: cells ``ab.control``,
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
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from hermes_fed.abtest.arms import ArmStats
from hermes_fed.errors import FederationError
from hermes_fed.federation import messages as wire
from hermes_fed.federation.cells import (
    AB_CONTROL,
    AB_PAIRED,
    AB_TREATMENT,
    AB_VERSION,
    Cell,
    cell_of,
)
from hermes_fed.federation.node_settings import NodeSettings
from hermes_fed.federation.queries import CONTROL_ARM, TREATMENT_ARM, AbQuery
from tenant_node.flower.egress import ReplyPayload

if TYPE_CHECKING:
    from hermes_fed.quality.config import QualityConfig
    from hermes_fed.store import SqlEventStore

logger = logging.getLogger(__name__)

CONTROL, TREATMENT, PAIRED, VERSION = AB_CONTROL, AB_TREATMENT, AB_PAIRED, AB_VERSION


def _arm_of(variant: object, query: AbQuery) -> str | None:
    if variant in (CONTROL_ARM, query.control):
        return CONTROL
    if variant in (TREATMENT_ARM, query.treatment):
        return TREATMENT
    return None


def session_scores(store: SqlEventStore, quality: QualityConfig | None = None) -> dict[str, float]:
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


def _read_sessions(store: SqlEventStore, ab_test_id: str | None
                   ) -> tuple[list[_Session], dict[str, tuple[str, int]]]:
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


def online_arm_stats(store: SqlEventStore, query: AbQuery,
                     quality: QualityConfig | None = None) -> dict[str, ArmStats]:
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


def version_stats(store: SqlEventStore, query: AbQuery,
                  quality: QualityConfig | None = None) -> ArmStats:
    """Session quality of ``query.version``'s sessions that started at or after ``since_us``."""
    from hermes_fed.events import to_micros

    scores = session_scores(store, quality)
    sessions, _ = _read_sessions(store, None)
    values = [scores[s.stream_id] for s in sessions
              if s.model_version == query.version and s.stream_id in scores
              and to_micros(s.occurred_at) >= query.since_us]
    return ArmStats.from_values(values)


def heldout_trajectories(store: SqlEventStore, heldout_fraction: float,
                         split_seed: int) -> list[Mapping[str, Any]]:
    """The node's held-out trajectories: the split ``plan_training`` keeps out of training,
    less those with broken tool use (a candidate that imitates the agent's failed calls
    better is not a better candidate; they never train either)."""
    from hermes_fed.quality.judges import broken_trajectories
    from hermes_fed.training.dataset import split_heldout
    from tenant_node.local_training import load_trajectories

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

    config = LoraTrainingConfig(r=query.rank, alpha=query.alpha, max_length=query.max_length,
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


def reply_payload(stats: Mapping[str, ArmStats]) -> ReplyPayload:
    """The `ReplyPayload` of named `ArmStats` (cells with their covariate sums; the egress
    guard drops a cell below k_min together with its covariates)."""
    cells: list[Cell] = [cell_of(name, arm) for name, arm in stats.items()]
    return ReplyPayload(cells=cells)


def answer(content: Any, settings: NodeSettings) -> ReplyPayload:
    """Answer one ``query.ab_stats`` message's content on this node (the ClientApp calls this)."""
    from hermes_fed.store import Keyring, open_store

    query = AbQuery.from_record(content.config_records[wire.CONFIG])
    keyring = Keyring.from_file(settings.keyring) if settings.keyring else None
    store = open_store(settings.store, settings.tenant_id, keyring=keyring,
                       schema=settings.store_schema or None)
    try:
        if query.mode == "online":
            return reply_payload(online_arm_stats(store, query, settings.quality()))
        if query.mode == "version":
            return reply_payload({VERSION: version_stats(store, query, settings.quality())})
        heldout = heldout_trajectories(store, settings.heldout_fraction, settings.split_seed)
    finally:
        store.close()
    arrays = content.array_records
    candidate = wire.record_tensors(arrays[wire.CANDIDATE])
    current = wire.record_tensors(arrays[wire.CURRENT]) if wire.CURRENT in arrays else None
    if not heldout:
        return reply_payload({PAIRED: ArmStats()})
    return reply_payload({PAIRED: paired_differences(settings.base_model, heldout, candidate,
                                                     current, query)})
