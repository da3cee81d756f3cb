"""How a round turns the parent adapter into the next one: a :class:`RoundStrategy`.

The round loop (:mod:`coordinator.rounds.loop`) is the same for every kind of round; what
differs is how ``train`` goes out and what comes back is combined:

* :class:`Aggregation` — plain: each node's adapter, weighted by its example count, goes
  to the aggregation mode (``hermes_fed.aggregation``: fedavg, exact, frozen-a);
* :class:`ServerSideDP` wraps an aggregation as Flower's
  ``DifferentialPrivacyServerSideFixedClipping`` wraps a strategy: equal weights, each
  update clipped to ``C`` around the parent, Gaussian noise ``N(0, (zC/m)²)`` on the mean;
* :class:`ClientSideDP` wraps it the other way: nodes clip and noise before they send
  (``UpdateShaping``), the coordinator only averages with equal weights and measures;
* :class:`SecAggPlus` is a different exchange: Flower's SecAgg+ workflow returns only the
  mean update of the B factors (frozen-a), to which server-side noise may be added.

Tenant-level DP as in DP-FedAvg (McMahan et al. 2018, arXiv:1710.06963); see
:mod:`coordinator.rounds.dp` for the settings and the accountant.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from coordinator.rounds.config import RoundsConfig
from coordinator.rounds.dp import PrivacySettings, noise_the_mean
from coordinator.rounds.exchange import exchange, payload_bytes
from coordinator.rounds.tenants import reply_tenant
from hermes_fed.aggregation.base import make_aggregator
from hermes_fed.aggregation.records import AggregationConfig, ClientUpdate
from hermes_fed.errors import FederationError
from hermes_fed.federation import messages as wire
from hermes_fed.federation.reasons import explain
from hermes_fed.federation.round_spec import RoundSpec, UpdateShaping
from hermes_fed.privacy.updates import clip_to_reference


@dataclass(slots=True)
class NodeOutcome:
    """What one node's ``train`` brought back (numbers and ids only)."""

    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    bytes_down: int = 0
    bytes_up: int = 0
    dataset_manifest: str | None = None
    update_norm: float | None = None
    outlier: bool = False
    tenant: str | None = None
    """The tenant the node's reply named (``versions`` or its error text)."""

    def label(self, node: int) -> str:
        return self.tenant or f"node-{node}"


@dataclass(slots=True)
class Collected:
    """A round's aggregate and what each node contributed."""

    tensors: dict[str, np.ndarray]
    report: dict[str, Any]
    nodes: dict[int, NodeOutcome]
    train_s: float
    aggregation_s: float
    dp_nodes: dict[str, dict[str, float]] = field(default_factory=dict)


def reply_error(reply: Message | None, max_length: int | None = None) -> str | None:
    """Why a ``train`` reply is unusable (no data from the node in it), or None.

    A reply without an adapter trained on fewer than the node's ``k_min`` examples; when
    it still reports ``count.selected`` (itself >= k_min), the examples were lost between
    selection and training: cut before their first assistant token at ``max_length``.
    """
    if reply is None:
        return "no reply (timeout)"
    if reply.has_error():
        return f"failed: {explain(reply.error.reason or '')}"
    if wire.ADAPTER not in reply.content:
        selected = wire.reply_metric(reply, wire.COUNT_SELECTED)
        if selected:
            at = f" at --max-length {max_length}" if max_length else ""
            return (f"no adapter: {int(selected)} selected, fewer than k_min trained (the "
                    f"others were cut before their first assistant token{at}): raise "
                    "--max-length")
        return "no adapter (suppressed: fewer than k_min examples)"
    return None


class RoundStrategy(ABC):
    """Send ``train``, collect, combine (module docstring)."""

    @abstractmethod
    def shaping(self, cfg: RoundsConfig) -> UpdateShaping:
        """What nodes do to their update before it leaves."""

    @abstractmethod
    def run(self, grid: Grid, cfg: RoundsConfig, nodes: Sequence[int],
            parent: Mapping[str, np.ndarray], spec: RoundSpec, run_id: int) -> Collected:
        """One round's train exchange and aggregation."""


@dataclass(frozen=True, slots=True)
class Aggregation(RoundStrategy):
    """Plain rounds: adapters weighted by example count (``weighted=False``: equally)."""

    weighted: bool = True

    def shaping(self, cfg: RoundsConfig) -> UpdateShaping:
        return UpdateShaping()

    def collect(self, grid: Grid, cfg: RoundsConfig, nodes: Sequence[int],
                parent: Mapping[str, np.ndarray], spec: RoundSpec
                ) -> tuple[list[ClientUpdate], dict[int, NodeOutcome], float]:
        """Send the parent to every node; the usable updates; refuse below ``min_nodes``."""
        record = spec.to_record()
        msgs = [Message(RecordDict({wire.ADAPTER: wire.adapter_record(parent),
                                    wire.CONFIG: record}),
                        dst_node_id=n, message_type=wire.TRAIN, group_id=str(spec.round))
                for n in nodes]
        outcomes = {m.metadata.dst_node_id: NodeOutcome(bytes_down=payload_bytes(m))
                    for m in msgs}
        replies, train_s = exchange(grid, msgs, timeout=cfg.round_timeout,
                                    interval=cfg.poll_interval)
        updates = []
        for n in nodes:
            reply, outcome = replies.get(n), outcomes[n]
            outcome.error = reply_error(reply, spec.settings.max_length)
            outcome.tenant = reply_tenant(reply)
            outcome.metrics = wire.reply_metrics(reply) or {}
            outcome.bytes_up = payload_bytes(reply) if reply is not None else 0
            outcome.dataset_manifest = wire.reply_version(reply, wire.DATASET_MANIFEST)
            if outcome.error is None and reply is not None:
                weight = int(outcome.metrics.get(wire.NUM_EXAMPLES, 0)) if self.weighted else 1
                tensors = wire.record_tensors(reply.content.array_records[wire.ADAPTER])
                updates.append(ClientUpdate(node_id=str(n), num_examples=weight,
                                            tensors=tensors))
        if len(updates) < cfg.min_nodes:
            raise FederationError(
                f"round {spec.round}: {len(updates)} usable replies, need {cfg.min_nodes}: "
                + "; ".join(f"{outcomes[n].label(n)}: {outcomes[n].error}" for n in nodes
                            if outcomes[n].error))
        return updates, outcomes, train_s

    def combine(self, cfg: RoundsConfig, updates: Sequence[ClientUpdate],
                parent: Mapping[str, np.ndarray]) -> Any:
        config = AggregationConfig(clip_norm=cfg.clip_norm or None, rank=cfg.settings.rank)
        scale = cfg.settings.alpha / cfg.settings.rank
        return make_aggregator(cfg.mode, config).aggregate(updates, scale=scale,
                                                           previous=parent)

    def run(self, grid: Grid, cfg: RoundsConfig, nodes: Sequence[int],
            parent: Mapping[str, np.ndarray], spec: RoundSpec, run_id: int) -> Collected:
        updates, outcomes, train_s = self.collect(grid, cfg, nodes, parent, spec)
        started = time.monotonic()
        result = self.combine(cfg, updates, parent)
        for node in result.report.nodes:
            outcomes[int(node.node_id)].update_norm = node.update_norm
            outcomes[int(node.node_id)].outlier = bool(node.outlier)
        return Collected(dict(result.tensors), result.report.to_dict(), outcomes, train_s,
                         time.monotonic() - started)


@dataclass(frozen=True, slots=True)
class ServerSideDP(RoundStrategy):
    """The coordinator clips every update to ``C`` and noises the equal-weight mean."""

    privacy: PrivacySettings
    inner: Aggregation = field(default_factory=lambda: Aggregation(weighted=False))

    def shaping(self, cfg: RoundsConfig) -> UpdateShaping:
        return UpdateShaping(dp_mode="server")

    def run(self, grid: Grid, cfg: RoundsConfig, nodes: Sequence[int],
            parent: Mapping[str, np.ndarray], spec: RoundSpec, run_id: int) -> Collected:
        updates, outcomes, train_s = self.inner.collect(grid, cfg, nodes, parent, spec)
        started = time.monotonic()
        clipped, dp_nodes = [], {}
        for u in updates:
            tensors, norm, clipped_norm = clip_to_reference(u.tensors, parent,
                                                            self.privacy.dp_clip)
            clipped.append(ClientUpdate(node_id=u.node_id, num_examples=1, tensors=tensors))
            dp_nodes[u.node_id] = {"update_norm": norm, "clipped_norm": clipped_norm}
            outcomes[int(u.node_id)].update_norm = norm
        result = self.inner.combine(cfg, clipped, parent)
        tensors = noise_the_mean(dict(result.tensors), sorted(updates[0].tensors),
                                 len(updates), self.privacy)
        return Collected(tensors, result.report.to_dict(), outcomes, train_s,
                         time.monotonic() - started, dp_nodes)


@dataclass(frozen=True, slots=True)
class ClientSideDP(RoundStrategy):
    """Nodes clip and noise their own update; the coordinator averages and measures."""

    privacy: PrivacySettings
    inner: Aggregation = field(default_factory=lambda: Aggregation(weighted=False))

    def shaping(self, cfg: RoundsConfig) -> UpdateShaping:
        return UpdateShaping(dp_mode="client", dp_clip=self.privacy.dp_clip,
                             dp_noise_std=self.privacy.node_noise_std(cfg.min_nodes),
                             secagg_clipping_range=self.privacy.secagg_clipping_range)

    def run(self, grid: Grid, cfg: RoundsConfig, nodes: Sequence[int],
            parent: Mapping[str, np.ndarray], spec: RoundSpec, run_id: int) -> Collected:
        updates, outcomes, train_s = self.inner.collect(grid, cfg, nodes, parent, spec)
        started = time.monotonic()
        dp_nodes = {}
        for u in updates:
            _, norm, clipped_norm = clip_to_reference(u.tensors, parent, math.inf)
            dp_nodes[u.node_id] = {"update_norm": norm, "clipped_norm": clipped_norm}
            outcomes[int(u.node_id)].update_norm = norm
        result = self.inner.combine(cfg, updates, parent)
        return Collected(dict(result.tensors), result.report.to_dict(), outcomes, train_s,
                         time.monotonic() - started, dp_nodes)


@dataclass(frozen=True, slots=True)
class SecAggPlus(RoundStrategy):
    """SecAgg+ exchange: the coordinator learns only the mean update (frozen-a's B)."""

    privacy: PrivacySettings

    def shaping(self, cfg: RoundsConfig) -> UpdateShaping:
        p = self.privacy
        clip = p.dp_clip if p.node_clips() else 0.0
        return UpdateShaping(dp_mode=p.dp, dp_clip=clip,
                             dp_noise_std=p.node_noise_std(cfg.min_nodes),
                             secagg_clipping_range=p.secagg_clipping_range)

    def run(self, grid: Grid, cfg: RoundsConfig, nodes: Sequence[int],
            parent: Mapping[str, np.ndarray], spec: RoundSpec, run_id: int) -> Collected:
        from coordinator.rounds.secagg import secagg_exchange

        outcome = secagg_exchange(grid, run_id=run_id, round_number=spec.round, nodes=nodes,
                                  parent=parent, config=dict(spec.to_record()),
                                  privacy=self.privacy, interval=cfg.poll_interval)
        live = len(nodes) - len(outcome.dropped)
        if live < cfg.min_nodes:
            raise FederationError(f"round {spec.round}: {live} nodes finished SecAgg+, need "
                                  f"{cfg.min_nodes}; nothing was published")
        started = time.monotonic()
        tensors = {k: np.asarray(v) for k, v in parent.items()}
        for key, delta in outcome.mean_delta.items():
            tensors[key] = (np.asarray(parent[key], dtype=np.float64) + delta).astype(
                np.asarray(parent[key]).dtype)
        tensors = noise_the_mean(tensors, sorted(outcome.mean_delta), live, self.privacy)
        outcomes = {n: NodeOutcome(
            metrics=outcome.node_metrics.get(n, {}),
            error="dropped out of SecAgg+" if n in outcome.dropped else None,
            bytes_down=outcome.bytes_down.get(n, 0), bytes_up=outcome.bytes_up.get(n, 0))
            for n in nodes}
        report = {"mode": cfg.mode, "residual": None, "fedavg_error": None,
                  "secagg": outcome.to_dict()}
        return Collected(tensors, report, outcomes, outcome.seconds,
                         time.monotonic() - started)


def make_strategy(cfg: RoundsConfig, privacy: PrivacySettings) -> RoundStrategy:
    """The strategy a run's config and privacy settings ask for (checked first)."""
    privacy.check_round_setup(cfg.mode, cfg.min_nodes)
    if privacy.secagg:
        return SecAggPlus(privacy)
    if privacy.dp == "server":
        return ServerSideDP(privacy)
    if privacy.dp == "client":
        return ClientSideDP(privacy)
    return Aggregation()
