"""The node's answer to ``query.trigger``: should it train now (DESIGN.md §5, §11)?

The decision is the node's own AutoTrigger (``hermes_fed.quality.trigger``) with the
``[trigger]`` rules of its ``[quality]`` table (``NodeSettings.quality_config``), over its
caught-up quality projection, at the time the coordinator's query carries (a simulated
clock drives every node alike). What leaves is counts and rates only, through the egress
guard: a count ``0 < n < k_min`` is left out and counted in ``suppressed-cells``, and the
high-quality rate goes only when both counts go (``hermes_fed.federation.delivery``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from hermes_fed.federation import delivery
from hermes_fed.federation import messages as wire
from hermes_fed.federation.node_settings import NodeSettings
from hermes_fed.quality.trigger import DAY_S, TriggerDecision

from .egress import ReplyPayload
from .local_round import open_node_log

logger = logging.getLogger(__name__)


def decide(settings: NodeSettings, query: delivery.TriggerQuery) -> TriggerDecision:
    """The node's trigger decision at ``query.now_us`` (the projection caught up first)."""
    from hermes_fed.quality.pipeline import decide_training

    now = datetime.fromtimestamp(query.now_us / 1e6, UTC)
    store = open_node_log(settings)
    try:
        return decide_training(store, now, settings.quality())
    finally:
        store.close()


def trigger_payload(settings: NodeSettings, decision: TriggerDecision) -> ReplyPayload:
    """The reply's content (the egress guard suppresses small counts when it builds it)."""
    inputs = decision.inputs
    metrics: dict[str, float] = {delivery.TRIGGER_TRAIN: 1.0 if decision.train else 0.0}
    if inputs.last_run_at is not None:
        metrics[delivery.DAYS_SINCE_TRAINING] = (
            (inputs.now - inputs.last_run_at).total_seconds() / DAY_S)
    # rate x count.new-scored = the high-quality count: the rate goes only where both
    # counts go, or it would give a suppressed count away
    if inputs.new_scored >= settings.k_min and not 0 < inputs.new_high_quality < settings.k_min:
        metrics[delivery.RATE_HIGH_QUALITY] = inputs.new_high_quality / inputs.new_scored
    return ReplyPayload(
        counts={delivery.COUNT_NEW_SCORED: inputs.new_scored,
                delivery.COUNT_NEW_HIGH_QUALITY: inputs.new_high_quality},
        metrics=metrics,
        versions={delivery.TRIGGER_RULE: decision.rule, wire.TENANT_ID: settings.tenant_id})


def answer(settings: NodeSettings, query: delivery.TriggerQuery) -> ReplyPayload:
    decision = decide(settings, query)
    logger.info("event=trigger_answered train=%s rule=%s", decision.train, decision.rule)
    return trigger_payload(settings, decision)
