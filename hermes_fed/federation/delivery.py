"""The autopilot's messages (DESIGN.md §10-11): readiness and delivery.

``query.trigger`` asks a node whether it should train now. In: ``config`` =
:class:`TriggerQuery` (the coordinator's clock, so a simulated clock drives every node's
decision alike). Reply, through the node's egress guard: metrics ``trigger.train`` (1.0 or
0.0), ``count.new-scored`` and ``count.new-high-quality`` (each left out and counted in
``suppressed-cells`` when below ``k_min``), ``days.since-training`` (absent before the first
run), ``rate.high-quality`` (only when both counts are reported: with ``count.new-scored``
it would give a suppressed ``count.new-high-quality`` away); versions
``trigger-rule`` (``stale`` / ``quality_drop`` / ``volume`` / ``wait`` / ``min_gap``) and
``tenant-id``. :class:`TriggerReport` reads it back.

``deploy`` (message type ``train.deploy``, :data:`~.messages.DEPLOY`) hands a node the
adapters its next traffic plan needs, and the plan. In: ``config`` = :class:`DeploySpec`
(the plan, and per adapter its version, sha256, LoRA config -- ``LoraTrainingConfig.to_dict()``,
unknown keys refused -- and lineage) and one ArrayRecord of float32 tensors per adapter
under :func:`adapter_key` (``adapter.<n>``, in the order of ``DeploySpec.adapters``). The
node checks each adapter's tensors against the sha256 (the registry's
``AdapterVersionPublished.sha256``, :func:`state_sha256`), writes a PEFT directory whose
config names the node's own base model, loads it into its upstream under the versioned
name, records ``TrafficPlanApplied`` and only then replies: metrics ``deploy.installed``
(the delivered adapters now on the node, written by this delivery or an earlier one, so a
re-delivery replies the same) and versions ``applied-plan`` (the plan's ``test_id``) and
``tenant-id``. A node that cannot apply the plan replies with an error (reason code,
:mod:`.reasons`: ``adapter-mismatch``, ``plan-adapter-missing``, ``upstream-load-failed``,
...) and keeps its last applied plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord, Message

from hermes_fed.errors import ConfigError, FederationError
from hermes_fed.serving.plan import TrafficPlan

from . import messages as wire

# --- query.trigger reply keys --------------------------------------------------------------
TRIGGER_TRAIN = "trigger.train"
COUNT_NEW_SCORED = "count.new-scored"
COUNT_NEW_HIGH_QUALITY = "count.new-high-quality"
RATE_HIGH_QUALITY = "rate.high-quality"
DAYS_SINCE_TRAINING = "days.since-training"
TRIGGER_RULE = "trigger-rule"
TRIGGER_RULES: frozenset[str] = frozenset({"stale", "quality_drop", "volume", "wait", "min_gap"})

# --- deploy reply keys ---------------------------------------------------------------------
DEPLOY_INSTALLED = "deploy.installed"
APPLIED_PLAN = "applied-plan"


def adapter_key(index: int) -> str:
    """The ArrayRecord name of the ``index``-th adapter of a ``deploy`` message."""
    return f"{wire.ADAPTER}.{index}"


@dataclass(frozen=True, slots=True)
class TriggerQuery:
    """The ``config`` of ``query.trigger``: the time the decision is taken at."""

    now_us: int

    def __post_init__(self) -> None:
        if self.now_us <= 0:
            raise FederationError(f"trigger query now-us must be > 0, got {self.now_us!r}")

    def to_record(self) -> ConfigRecord:
        return ConfigRecord({"now-us": int(self.now_us)})

    @classmethod
    def from_record(cls, config: Mapping[str, Any]) -> TriggerQuery:
        try:
            return cls(now_us=int(config["now-us"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise FederationError(f"trigger query config is missing or bad: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class TriggerReport:
    """One node's answer to ``query.trigger`` as the coordinator reads it."""

    tenant: str
    train: bool
    rule: str
    new_scored: int | None = None
    new_high_quality: int | None = None
    high_quality_rate: float | None = None
    days_since_training: float | None = None

    @classmethod
    def from_reply(cls, reply: Message | None) -> TriggerReport | None:
        """The report in a good reply; None for no reply or an error reply."""
        metrics = wire.reply_metrics(reply)
        rule = wire.reply_version(reply, TRIGGER_RULE)
        if metrics is None or TRIGGER_TRAIN not in metrics or rule not in TRIGGER_RULES:
            return None
        tenant = wire.reply_version(reply, wire.TENANT_ID) or ""

        def count(key: str) -> int | None:
            return int(metrics[key]) if key in metrics else None

        return cls(tenant=tenant, train=metrics[TRIGGER_TRAIN] >= 0.5, rule=str(rule),
                   new_scored=count(COUNT_NEW_SCORED),
                   new_high_quality=count(COUNT_NEW_HIGH_QUALITY),
                   high_quality_rate=metrics.get(RATE_HIGH_QUALITY),
                   days_since_training=metrics.get(DAYS_SINCE_TRAINING))


@dataclass(frozen=True, slots=True)
class DeployAdapter:
    """One adapter a ``deploy`` carries (its tensors travel beside the config)."""

    version: str
    sha256: str
    lora_config: Mapping[str, Any]
    lineage: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not wire.VERSION_ID.fullmatch(self.version) or len(self.version) > wire.MAX_VERSION_ID:
            raise FederationError(f"deploy: bad adapter version {self.version!r}")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise FederationError(f"deploy: adapter {self.version} sha256 must be 64 hex "
                                  f"digits, got {self.sha256!r}")


@dataclass(frozen=True, slots=True)
class DeploySpec:
    """The ``config`` of ``deploy``: the plan to apply and the adapters it needs."""

    plan: TrafficPlan
    adapters: tuple[DeployAdapter, ...] = ()

    def __post_init__(self) -> None:
        sent = [a.version for a in self.adapters]
        if len(set(sent)) != len(sent):
            raise FederationError(f"deploy: adapter versions repeat: {sent!r}")

    def to_record(self) -> ConfigRecord:
        return ConfigRecord({
            "plan": json.dumps(self.plan.to_dict(), sort_keys=True),
            "adapters": json.dumps([{"version": a.version, "sha256": a.sha256,
                                     "lora-config": dict(a.lora_config),
                                     "lineage": dict(a.lineage)} for a in self.adapters],
                                   sort_keys=True)})

    @classmethod
    def from_record(cls, config: Mapping[str, Any]) -> DeploySpec:
        try:
            plan = TrafficPlan.from_dict(json.loads(str(config["plan"])))
            raw = json.loads(str(config.get("adapters", "[]")))
            adapters = tuple(DeployAdapter(version=str(a["version"]), sha256=str(a["sha256"]),
                                           lora_config=dict(a["lora-config"]),
                                           lineage=dict(a.get("lineage", {})))
                             for a in raw)
        except (KeyError, ValueError, TypeError, AttributeError, ConfigError) as exc:
            raise FederationError(f"deploy config is missing or bad: {exc}") from None
        return cls(plan=plan, adapters=adapters)
