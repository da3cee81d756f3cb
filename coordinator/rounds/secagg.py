"""The ``train`` exchange of a round under SecAgg+: the coordinator learns only the sum.

Flower 1.42 keeps SecAgg+ (Bell et al. 2020, arXiv:2002.04156) on the legacy strategy
API: :class:`flwr.server.workflow.SecAggPlusWorkflow` runs four stages (setup, share
keys, collect masked vectors, unmask) over a ``LegacyContext`` whose strategy hands out
the ``FitIns`` and receives the unmasked aggregate. Here the strategy is a small collector
(:class:`_SumCollector`), and the grid is wrapped so that each stage polls replies at our
interval (not Flower's 3 s) and counts the bytes each node sends and receives.

What comes back is ``Σ q_i Δ_i / Σ q_i`` with ``q_i`` the quantised weight (num-examples,
or 1 under DP) and ``Δ_i`` each node's (clipped) update of the B factors — frozen-a's
aggregate, exact up to quantisation: each value is stochastically rounded to a step of
``2R/Q`` (R the clipping range, Q the quantisation range), so the mean is off by at most
``m · (2R/Q) · max_weight / Σ w_i`` per value; that bound is reported.

Flower logs "Secure aggregation halted" and returns normally when fewer nodes than the
reconstruction threshold remain; the collector then holds nothing, and
:func:`secagg_exchange` raises :class:`FederationError` naming the stage (invariant S1:
a halted SecAgg+ round publishes nothing).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common import FitIns, FitRes, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.server_config import ServerConfig
from flwr.server.strategy import Strategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.serverapp import Grid

from coordinator.rounds.dp import PrivacySettings
from coordinator.rounds.exchange import exchange, payload_bytes
from hermes_fed.errors import FederationError

logger = logging.getLogger(__name__)

STAGES = ("setup", "share-keys", "collect-masked-vectors", "unmask")


@dataclass(frozen=True, slots=True)
class SecAggOutcome:
    """The unmasked mean update and what the protocol saw (no node's own update)."""

    mean_delta: dict[str, np.ndarray]
    total_weight: float
    node_metrics: dict[int, dict[str, float]]
    sampled: tuple[int, ...]
    dropped: tuple[int, ...]
    stages: tuple[tuple[str, int, bool], ...]
    bytes_down: dict[int, int]
    bytes_up: dict[int, int]
    seconds: float
    quantization_step: float
    quantization_bound: float

    def to_dict(self) -> dict[str, Any]:
        return {"sampled": [str(n) for n in self.sampled],
                "dropped": [str(n) for n in self.dropped],
                "stages": [{"stage": s, "active_nodes": a, "ok": ok} for s, a, ok in self.stages],
                "total_weight": self.total_weight, "seconds": self.seconds,
                "quantization_step": self.quantization_step,
                "quantization_bound": self.quantization_bound,
                "bytes_down": sum(self.bytes_down.values()),
                "bytes_up": sum(self.bytes_up.values())}


class _PollingGrid:
    """The grid as SecAgg+ sees it: our reply polling, bytes counted per node."""

    def __init__(self, grid: Grid, interval: float, timeout: float) -> None:
        self._grid = grid
        self._interval = interval
        self._timeout = timeout
        self.down: dict[int, int] = defaultdict(int)
        self.up: dict[int, int] = defaultdict(int)

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> list[Message]:
        msgs = list(messages)
        for m in msgs:
            self.down[m.metadata.dst_node_id] += payload_bytes(m)
        replies, _ = exchange(self._grid, msgs, timeout=timeout or self._timeout,
                              interval=self._interval)
        for node, reply in replies.items():
            self.up[node] += payload_bytes(reply)
        return list(replies.values())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


class _SumCollector(Strategy):
    """A legacy strategy that hands out fixed ``FitIns`` and keeps the unmasked aggregate."""

    def __init__(self, fit: list[tuple[ClientProxy, FitIns]]) -> None:
        self._fit = fit
        self.aggregate: list[np.ndarray] | None = None
        self.results: list[tuple[ClientProxy, FitRes]] = []
        self.failures = 0

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return None

    def configure_fit(self, server_round: int, parameters: Parameters,
                      client_manager: ClientManager) -> list[tuple[ClientProxy, FitIns]]:
        return self._fit

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures: list[Any]) -> tuple[Parameters | None, dict[str, Any]]:
        self.results, self.failures = list(results), len(failures)
        if results:  # SecAgg+ sets every result's parameters to the unmasked aggregate
            self.aggregate = parameters_to_ndarrays(results[0][1].parameters)
        return None, {}

    def configure_evaluate(self, server_round: int, parameters: Parameters,
                           client_manager: ClientManager) -> list[Any]:
        return []

    def aggregate_evaluate(self, server_round: int, results: list[Any],
                           failures: list[Any]) -> tuple[float | None, dict[str, Any]]:
        return None, {}

    def evaluate(self, server_round: int, parameters: Parameters) -> None:
        return None


class _TracedSecAggPlus(SecAggPlusWorkflow):
    """Flower's workflow, recording each stage's live node count and outcome."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trace: list[tuple[str, int, bool]] = []

    def _note(self, stage: str, state: Any, ok: bool) -> bool:
        self.trace.append((stage, len(state.active_node_ids), bool(ok)))
        logger.info("secagg stage=%s active_nodes=%d ok=%s", stage,
                    len(state.active_node_ids), ok)
        return ok

    def setup_stage(self, grid: Any, context: Any, state: Any) -> bool:
        return self._note("setup", state, super().setup_stage(grid, context, state))

    def share_keys_stage(self, grid: Any, context: Any, state: Any) -> bool:
        return self._note("share-keys", state, super().share_keys_stage(grid, context, state))

    def collect_masked_vectors_stage(self, grid: Any, context: Any, state: Any) -> bool:
        return self._note("collect-masked-vectors", state,
                          super().collect_masked_vectors_stage(grid, context, state))

    def unmask_stage(self, grid: Any, context: Any, state: Any) -> bool:
        return self._note("unmask", state, super().unmask_stage(grid, context, state))


def sent_keys(parent: Mapping[str, np.ndarray]) -> list[str]:
    """The tensors nodes send in frozen-a (every B; A is the shared seed's), sorted."""
    return sorted(k for k in parent if ".lora_A." not in k)


def secagg_exchange(grid: Grid, *, run_id: int, round_number: int, nodes: Sequence[int],
                    parent: Mapping[str, np.ndarray], config: Mapping[str, Any],
                    privacy: PrivacySettings, interval: float) -> SecAggOutcome:
    """Run SecAgg+ over ``nodes`` from ``parent``; the mean ``Δ`` of the B factors.

    Raises
    ------
    FederationError
        When the protocol halts (fewer live nodes than the reconstruction threshold):
        nothing is returned and nothing may be published (S1).
    """
    names = sorted(parent)
    fitins = FitIns(parameters=ndarrays_to_parameters([np.asarray(parent[k]) for k in names]),
                    config={**dict(config), "adapter-keys": ",".join(names)})
    polling = _PollingGrid(grid, interval, privacy.secagg_timeout)
    collector = _SumCollector([(GridClientProxy(n, grid, run_id), fitins) for n in nodes])
    context = LegacyContext(Context(run_id=run_id, node_id=0, node_config={},
                                    state=RecordDict(), run_config={}),
                            config=ServerConfig(num_rounds=1), strategy=collector)
    context.state.config_records["config"] = ConfigRecord({"current_round": round_number})
    context.state.array_records["parameters"] = ArrayRecord()
    workflow = _TracedSecAggPlus(
        privacy.secagg_shares, privacy.secagg_threshold, max_weight=privacy.secagg_max_weight,
        clipping_range=privacy.secagg_clipping_range,
        quantization_range=privacy.secagg_quantization_range, timeout=privacy.secagg_timeout)
    started = time.monotonic()
    workflow(polling, context)  # type: ignore[arg-type]  # duck-typed: only send_and_receive
    seconds = time.monotonic() - started
    if collector.aggregate is None:
        last = workflow.trace[-1] if workflow.trace else ("setup", 0, False)
        raise FederationError(
            f"round {round_number}: secure aggregation halted at stage {last[0]} with "
            f"{last[1]} of {len(nodes)} nodes alive, below the reconstruction threshold "
            f"{privacy.secagg_threshold}; nothing was published")
    keys = sent_keys(parent)
    if len(keys) != len(collector.aggregate):
        raise FederationError(f"SecAgg+ aggregate has {len(collector.aggregate)} tensors, "
                              f"expected {len(keys)} B factors")
    mean = {}
    for key, value in zip(keys, collector.aggregate, strict=True):
        if np.shape(value) != np.shape(parent[key]):
            raise FederationError(f"SecAgg+ aggregate {key} has shape {np.shape(value)}, "
                                  f"expected {np.shape(parent[key])}")
        mean[key] = np.asarray(value, dtype=np.float64)
    node_metrics = {int(proxy.node_id): {k: float(v) for k, v in res.metrics.items()
                                         if isinstance(v, int | float)}
                    for proxy, res in collector.results}
    total = float(sum(res.num_examples for _, res in collector.results))
    live = sorted(node_metrics)
    step = 2 * privacy.secagg_clipping_range / privacy.secagg_quantization_range
    bound = len(live) * step * privacy.secagg_max_weight / total if total else float("inf")
    return SecAggOutcome(
        mean_delta=mean, total_weight=total, node_metrics=node_metrics,
        sampled=tuple(sorted(nodes)), dropped=tuple(n for n in sorted(nodes) if n not in live),
        stages=tuple(workflow.trace), bytes_down=dict(polling.down), bytes_up=dict(polling.up),
        seconds=seconds, quantization_step=step, quantization_bound=bound)
