"""A/B looks over a Flower ``Grid``: ask every node ``query.ab_stats``, record, act.

Orchestration only. One look (`look_at_open_tests`, called after each federated round or
alone with ``ab-only``):

1. every open test in the coordinator's log goes to every node as a ``query.ab_stats``
   message whose ``config`` carries the ``ABTestCreated`` facts (``ab-test-id``,
   ``control``, ``treatment``, ``traffic-split``, ``min-samples``, ``duration-days``) and
   the ``mode``: ``offline`` while the treatment is a promotion *candidate* and has no
   offline look yet (then the message also carries the ``candidate`` and ``current``
   adapters from the registry), ``online`` otherwise;
2. each reply's cells (``ab.control``/``ab.treatment`` or ``ab.paired``: ``.n``,
   ``.sum``, ``.sumsq`` and the CUPED sums) become `ArmStats`; a node whose cell was
   suppressed (fewer than k_min units) or that failed is listed, not guessed at;
3. `ABTestLog` records the look (and the conclusion); a ROLLBACK rolls a live treatment
   back (`PromotionLog.on_conclusion`);
4. the production version's session quality since the last look is asked for
   (``mode=version``), recorded as ``ModelQualityReported``, and the negative-feedback-loop
   guard runs.

Tenants are named by what their nodes' replies say (``tenant-id`` in ``versions``, or an
error reply's ``tenant=``; :class:`~coordinator.rounds.tenants.TenantNames`), a node that
never said by its Flower id (``node-<id>``): per-tenant arms, suppressed lists and the
test's looks (``ab status``) name tenants.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from coordinator.logs.abtest import ABTestLog, ABTestStatus, LookOutcome, arm_to_dict
from coordinator.logs.promotion import PromotionLog
from coordinator.rounds.exchange import exchange_keyed
from coordinator.rounds.tenants import TenantNames
from hermes_fed.abtest import ArmStats, QualityGuardConfig, TenantArms
from hermes_fed.clock import current_clock
from hermes_fed.errors import HermesFedError
from hermes_fed.events import to_micros
from hermes_fed.federation import messages as wire
from hermes_fed.federation.cells import (
    AB_CONTROL,
    AB_PAIRED,
    AB_TREATMENT,
    AB_VERSION,
    arm_from_metrics,
)
from hermes_fed.federation.queries import AbQuery
from hermes_fed.federation.reasons import explain
from hermes_fed.registry.promotion import Stage

if TYPE_CHECKING:
    from coordinator.logs.registry import AdapterRegistry
    from coordinator.rounds.config import RoundsConfig

logger = logging.getLogger(__name__)

BASE_VERSIONS = frozenset({"base", "none"})


def online_query(status: ABTestStatus) -> AbQuery:
    s = status.spec
    return AbQuery("online", s.ab_test_id, s.control, s.treatment, float(s.traffic_split),
                   min_samples=s.min_samples, duration_days=s.duration_days)


def offline_query(status: ABTestStatus, lineage: Mapping[str, Any]) -> AbQuery:
    """Score as the candidate was trained: its rank, alpha and max length."""
    s = status.spec
    return AbQuery("offline", s.ab_test_id, s.control, s.treatment, float(s.traffic_split),
                   min_samples=s.min_samples, duration_days=s.duration_days,
                   rank=int(lineage.get("r", 8)), alpha=float(lineage.get("alpha", 16.0)),
                   max_length=int(lineage.get("max_length", 256)))


def version_query(version: str, since_us: int) -> AbQuery:
    return AbQuery("version", version=version, since_us=int(since_us))


def query_nodes(grid: Grid, requests: Sequence[tuple[str, int, RecordDict]], *,
                timeout: float, interval: float) -> dict[tuple[str, int], Message]:
    """Push every ``(key, node, content)`` as ``query.ab_stats`` at once; pull the replies."""
    keyed = [((key, node), Message(content, dst_node_id=node,
                                   message_type=wire.QUERY_AB_STATS))
             for key, node, content in requests]
    replies, _ = exchange_keyed(grid, keyed, timeout=timeout, interval=interval)
    return replies


def why_missing(reply: Message | None) -> str:
    """Why a node's reply holds no statistics: no reply, a failure (its reason), or k_min."""
    if reply is None:
        return "no reply"
    if reply.has_error():
        return f"failed: {explain(reply.error.reason or '')}"
    return "suppressed (fewer than k_min)"


def tenant_cells(replies: Mapping[int, Message], nodes: Sequence[int], names: TenantNames,
                 prefix: str) -> tuple[list[tuple[str, ArmStats]], list[str]]:
    """Each node's cell ``prefix`` with its tenant's name; the others as ``"<tenant>: <why>"``."""
    cells: list[tuple[str, ArmStats]] = []
    missing: list[str] = []
    for node in nodes:
        metrics = wire.reply_metrics(replies.get(node))
        arm = arm_from_metrics(metrics, prefix) if metrics else None
        if arm is None:
            missing.append(f"{names.name(node)}: {why_missing(replies.get(node))}")
        else:
            cells.append((names.name(node), arm))
    return cells, missing


def tenant_arms(replies: Mapping[int, Message], nodes: Sequence[int],
                names: TenantNames | None = None) -> tuple[list[TenantArms], list[str]]:
    """Both arms of each tenant that reported them; the others as ``"<tenant>: <why>"``."""
    names = names if names is not None else TenantNames()
    names.learn_all(replies)
    arms: list[TenantArms] = []
    missing: list[str] = []
    for node in nodes:
        metrics = wire.reply_metrics(replies.get(node))
        control = arm_from_metrics(metrics, AB_CONTROL) if metrics else None
        treatment = arm_from_metrics(metrics, AB_TREATMENT) if metrics else None
        if control is None or treatment is None:
            missing.append(f"{names.name(node)}: {why_missing(replies.get(node))}")
        else:
            arms.append(TenantArms(names.name(node), control, treatment))
    return arms, missing


def _wants_offline(status: ABTestStatus, promotions: PromotionLog) -> bool:
    current = promotions.state().get(status.spec.treatment)
    return (current is not None and current.stage is Stage.CANDIDATE
            and not status.has_offline_look())


def _offline_content(registry: AdapterRegistry, status: ABTestStatus) -> RecordDict:
    spec = status.spec
    query = offline_query(status, registry.get(spec.treatment).lineage)
    content = RecordDict({wire.CONFIG: query.to_record(),
                          wire.CANDIDATE: wire.adapter_record(registry.load(spec.treatment))})
    if spec.control not in BASE_VERSIONS:
        content[wire.CURRENT] = wire.adapter_record(registry.load(spec.control))
    return content


def _by_node(replies: Mapping[tuple[str, int], Message], key: str) -> dict[int, Message]:
    return {node: m for (k, node), m in replies.items() if k == key}


def _record_offline(abtests: ABTestLog, status: ABTestStatus, replies: Mapping[int, Message],
                    nodes: Sequence[int], now: datetime | None,
                    names: TenantNames | None = None) -> LookOutcome:
    names = names if names is not None else TenantNames()
    names.learn_all(replies)
    cells, missing = tenant_cells(replies, nodes, names, AB_PAIRED)
    paired = dict(cells)
    return abtests.record_offline_look(status.spec.ab_test_id, paired, suppressed=missing, now=now)


def _quality_request(promotions: PromotionLog) -> tuple[str, int] | None:
    """The production version and since when (µs) to count its sessions: its last look."""
    version = promotions.state().production
    if version is None:
        return None
    since = max([*(w for w, _ in promotions.quality_series(version)),
                 *(h.recorded_at for h in promotions.history(version)
                   if h.event_type == "ModelPromoted" and h.data["stage"] == "production")])
    return version, to_micros(since)


def _record_quality(promotions: PromotionLog, version: str, replies: Mapping[int, Message],
                    nodes: Sequence[int], guard: QualityGuardConfig | None,
                    names: TenantNames | None = None) -> dict[str, Any]:
    names = names if names is not None else TenantNames()
    names.learn_all(replies)
    cells, missing = tenant_cells(replies, nodes, names, AB_VERSION)
    total = sum((arm for _, arm in cells), ArmStats())
    stats = {**arm_to_dict(total), "mean": total.mean if total.n else None,
             "tenants": len(nodes) - len(missing), "suppressed_tenants": missing}
    look = promotions.record_quality(version, stats)
    trend, fact = promotions.check_feedback_loop(guard)
    return {"version": version, "look": look, "stats": stats,
            "breached": bool(trend and trend.breached), "rolled_back": fact is not None}


def look_at_open_tests(grid: Grid, registry: AdapterRegistry, nodes: Sequence[int], *, timeout: float,
                       interval: float, now: datetime | None = None,
                       guard: QualityGuardConfig | None = None,
                       names: TenantNames | None = None) -> list[LookOutcome]:
    """One look at every open test (offline or online) and at production quality.

    All questions go out in one exchange; then each test's look is recorded, a ROLLBACK
    withdraws its live treatment, and the production version's quality is recorded and
    guarded.
    """
    names = names if names is not None else TenantNames()
    abtests = ABTestLog(registry.store)
    promotions = PromotionLog(registry.store)
    plans: list[tuple[ABTestStatus, bool]] = []
    requests: list[tuple[str, int, RecordDict]] = []
    for status in abtests.open_tests():
        offline = _wants_offline(status, promotions)
        plans.append((status, offline))
        # a RecordDict per message: Flower tracks a message's objects by identity
        requests += [(status.spec.ab_test_id, n,
                      _offline_content(registry, status) if offline
                      else RecordDict({wire.CONFIG: online_query(status).to_record()}))
                     for n in nodes]
    quality = _quality_request(promotions)
    if quality is not None:
        requests += [("", n, RecordDict({wire.CONFIG: version_query(*quality).to_record()}))
                     for n in nodes]
    if not requests:
        return []
    replies = query_nodes(grid, requests, timeout=timeout, interval=interval)
    outcomes = []
    for status, offline in plans:
        answers = _by_node(replies, status.spec.ab_test_id)
        if offline:
            outcome = _record_offline(abtests, status, answers, nodes, now, names)
        else:
            arms, missing = tenant_arms(answers, nodes, names)
            outcome = abtests.record_online_look(status.spec.ab_test_id, arms,
                                                 suppressed=missing, now=now)
        logger.info("ab_test_id=%s look=%d verdict=%s concluded=%s", outcome.ab_test_id,
                    outcome.look, outcome.verdict.value, outcome.concluded)
        if outcome.concluded:
            promotions.on_conclusion(status.spec.ab_test_id, status.spec.treatment,
                                     outcome.verdict.value, outcome.reasons)
        outcomes.append(outcome)
    if quality is not None:
        _record_quality(promotions, quality[0], _by_node(replies, ""), nodes, guard, names)
    return outcomes


def ab_looks(grid: Grid, registry: AdapterRegistry, nodes: Sequence[int],
             cfg: RoundsConfig, names: TenantNames | None = None) -> None:
    """``ab-only`` runs: ``rounds`` looks, no training (``coordinator.rounds.loop``)."""
    for _ in range(int(cfg.rounds)):
        look_at_open_tests(grid, registry, nodes, timeout=cfg.round_timeout,
                           interval=cfg.poll_interval, now=current_clock().now(), names=names)


def look_after_round(grid: Grid, registry: AdapterRegistry, nodes: Sequence[int],
                     cfg: RoundsConfig, names: TenantNames | None = None) -> None:
    """One look after a federated round; a failed look is logged and leaves the round be."""
    try:
        look_at_open_tests(grid, registry, nodes, timeout=cfg.round_timeout,
                           interval=cfg.poll_interval, now=current_clock().now(), names=names)
    except (HermesFedError, ValueError, KeyError) as exc:
        logger.error("action=ab_look status=failed error=%s", type(exc).__name__)
        logger.debug("ab look failed", exc_info=True)
