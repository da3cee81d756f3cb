"""Nodes for autopilot tests: a :class:`Federation` whose answers the test sets.

The coordinator side is real (the SQLite coordinator log, the registry writing PEFT
files, the A/B and promotion logs); what the nodes answer is the test's input, as a table:
each tenant's trigger verdict, per-arm session statistics, paired held-out differences,
production quality, and whether it applies a plan. A deploy is checked as a node would:
each adapter's tensors must hash to the sha256 the registry published.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from coordinator.autopilot.decide import Readiness
from coordinator.autopilot.federation import DeployAck, OnlineStats, PairedStats, VersionStats
from coordinator.logs.registry import AdapterRegistry
from hermes_fed.abtest import ArmStats, TenantArms
from hermes_fed.federation.delivery import DeploySpec, TriggerReport
from hermes_fed.federation.queries import AbQuery
from hermes_fed.training.adapter import state_sha256
from hermes_fed.training.config import LoraTrainingConfig


@dataclass
class SimClock:
    """A clock the test moves by hand."""

    at: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def now(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


def arm(n: int, mean: float, sd: float = 0.1) -> ArmStats:
    """An arm of ``n`` sessions with this mean and standard deviation (exact sums)."""
    total = n * mean
    sumsq = (n - 1) * sd * sd + n * mean * mean
    return ArmStats(n, total, sumsq)


@dataclass
class ScriptedNodes:
    """The test's nodes (module docstring). Every call is counted in ``calls``."""

    registry: AdapterRegistry
    tenants: tuple[str, ...] = ("acme", "globex", "initech")
    train: dict[str, bool] = field(default_factory=dict)
    train_versions: int = 1000  # say train only while the registry holds fewer versions
    offline_diff: float = 0.05  # paired candidate - current held-out difference
    online_effect: float = 0.05  # treatment - control session quality
    effects: dict[str, float] = field(default_factory=dict)  # by version prefix ("v2")
    quality: list[float] = field(default_factory=list)  # production means, one per look
    refuse_deploy: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)  # nodes that do not answer at all
    calls: list[str] = field(default_factory=list)
    deployed: list[tuple[str, str]] = field(default_factory=list)  # (tenant, plan test id)
    fail_rounds: bool = False
    quality_since: list[int] = field(default_factory=list)  # since_us of each quality look
    hold: Path | None = None  # after publishing, touch this file and hang (a kill -9 test)

    def _answering(self) -> list[str]:
        return [t for t in self.tenants if t not in self.silent]

    def poll_triggers(self, now: datetime) -> Readiness:
        self.calls.append("poll_triggers")
        more = len(self.registry.versions()) < self.train_versions
        reports = tuple(TriggerReport(t, more and self.train.get(t, False),
                                      "volume" if more and self.train.get(t) else "wait",
                                      new_scored=600, new_high_quality=300,
                                      high_quality_rate=0.5, days_since_training=3.0)
                        for t in self._answering())
        return Readiness(reports, tuple(f"{t}: no reply" for t in self.silent))

    def run_rounds(self, parent: str | None, rounds: int) -> list[str]:
        self.calls.append(f"run_rounds:{rounds}")
        if self.fail_rounds:
            from hermes_fed.errors import FederationError

            raise FederationError("0 of 1 nodes replied usable updates")
        published = []
        for _ in range(rounds):
            seed = len(self.registry.versions()) + 1
            rng = np.random.default_rng(seed)
            tensors = {"layer.lora_A.weight": rng.normal(size=(2, 4)).astype(np.float32),
                       "layer.lora_B.weight": rng.normal(size=(4, 2)).astype(np.float32)}
            v = self.registry.publish(tensors, parent=parent, lineage={"round": seed, "r": 2},
                                      training_config=LoraTrainingConfig(r=2, alpha=4.0))
            parent = v.version
            published.append(v.version)
            if self.hold is not None:
                self.hold.write_text(v.version)
                threading.Event().wait()  # until the test kills this process
        return published

    def offline_look(self, query: AbQuery) -> PairedStats:
        self.calls.append(f"offline_look:{query.treatment}")
        return PairedStats({t: arm(40, self.offline_diff, 0.05) for t in self._answering()})

    def online_look(self, query: AbQuery) -> OnlineStats:
        self.calls.append(f"online_look:{query.ab_test_id}")
        share = query.traffic_split
        effect = self.effects.get(query.treatment.partition("-")[0], self.online_effect)
        arms = tuple(TenantArms(t, arm(int(2000 * (1 - share)), 0.6, 0.1),
                                arm(int(2000 * share), 0.6 + effect, 0.1))
                     for t in self._answering())
        return OnlineStats(arms)

    def version_quality(self, version: str, since_us: int) -> VersionStats:
        self.calls.append(f"version_quality:{version}")
        self.quality_since.append(since_us)
        mean = self.quality.pop(0) if self.quality else 0.6
        return VersionStats(arm(300, mean, 0.1), len(self._answering()))

    def deploy(self, spec: DeploySpec,
               tensors: Sequence[Mapping[str, np.ndarray]]) -> list[DeployAck]:
        self.calls.append(f"deploy:{spec.plan.test_id}")
        for adapter, state in zip(spec.adapters, tensors, strict=True):
            assert state_sha256(state) == adapter.sha256, adapter.version
        acks = []
        for t in self._answering():
            if t in self.refuse_deploy:
                acks.append(DeployAck(t, None, 0, "adapter-load-failed"))
            else:
                self.deployed.append((t, spec.plan.test_id))
                acks.append(DeployAck(t, spec.plan.test_id, len(spec.adapters)))
        return acks


def log_summary(registry: AdapterRegistry) -> list[tuple[Any, ...]]:
    """The coordinator log as comparable facts (no ids, times or positions)."""
    out: list[tuple[Any, ...]] = []
    for e in registry.store.read():
        d = e.data
        if e.type == "AutopilotStepIntended":
            out.append((e.type, d["cycle"], d["step"], d["action"]))
        elif e.type == "AutopilotStepCompleted":
            out.append((e.type, d["cycle"], d["step"], d["action"], d["ok"]))
        elif e.type in ("ModelPromoted", "ModelRolledBack"):
            out.append((e.type, d["version"], d.get("stage"), d.get("to_version")))
        elif e.type == "AdapterVersionPublished":
            out.append((e.type, d["version"]))
        elif e.type in ("AutopilotCycleEnded",):
            out.append((e.type, d["cycle"], d["outcome"], d["version"]))
        elif e.type in ("ABTestCreated", "ABTestConcluded"):
            out.append((e.type, d["ab_test_id"], d.get("decision")))
        elif e.type == "ABTestStatsReported":
            out.append((e.type, d["ab_test_id"], d["round"]))
        elif e.type == "ModelQualityReported":
            out.append((e.type, d["version"], d["round"]))
        else:
            out.append((e.type,))
    return out
