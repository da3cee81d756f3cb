"""The ``Aggregator`` port, the steps every mode shares, and the registry of modes by name.

Every mode runs the same pipeline: check the round (:func:`prepare_round`), measure each
node's update norm against the previous global adapter, clip, score outliers, then combine
the LoRA factors its own way (``_combine``). Dense tensors (``modules_to_save``) are a plain
weighted mean in every mode, which is exact for them.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from hermes_fed.errors import AggregationError, ConfigError

from .adapters import Matrix, PreparedRound, prepare_round
from .lowrank import relative
from .records import (
    AggregationConfig,
    AggregationReport,
    AggregationResult,
    ClientUpdate,
    LayerReport,
    NodeReport,
)
from .robustness import clip_coefficients, clipped_dense, modified_z_scores, update_norms

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LayerOutcome:
    """One module's result, errors absolute and unscaled (``||·||_F`` of ``B @ A`` terms)."""

    prefix: str
    rank_in: int
    rank_out: int
    exact_norm: float
    error: float
    fedavg_error: float | None


@dataclass(frozen=True, slots=True)
class Combined:
    """What a mode's ``_combine`` returns: float64 factors by key and per-module outcomes."""

    tensors: dict[str, Matrix]
    layers: tuple[LayerOutcome, ...]
    stacked: dict[str, Matrix] | None = None


class Aggregator(ABC):
    """Combines one round of client adapters into the next global adapter."""

    name: ClassVar[str]
    shared_a: ClassVar[bool] = False

    def __init__(self, config: AggregationConfig | None = None) -> None:
        self.config = config if config is not None else AggregationConfig()

    def aggregate(self, updates: Sequence[ClientUpdate], *, scale: float,
                  previous: Mapping[str, Any] | None = None) -> AggregationResult:
        """Aggregate a round.

        Parameters
        ----------
        updates
            One :class:`ClientUpdate` per node; weights are ``num_examples / Σ num_examples``.
        scale
            ``alpha / r`` of the adapters, the factor of ``ΔW = scale · B @ A``; it sets the
            units of update norms and of the clipping bound.
        previous
            The global adapter the nodes started from: the reference of update norms and
            clipping (zero when None), the source of the shared A in frozen-a, and of the
            target rank in exact.

        Raises
        ------
        AggregationError
            Empty round, duplicate node, missing or extra tensor, shape mismatch, NaN/inf,
            or (frozen-a) an A that differs; the message names the node and the tensor.
        """
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not (
                math.isfinite(scale) and scale > 0):
            raise AggregationError(f"scale (alpha / r) must be a finite number > 0, "
                                   f"got {scale!r}")
        rnd = prepare_round(updates, previous, shared_a=self.shared_a)
        norms = update_norms(rnd, float(scale))
        coefs = clip_coefficients(norms, self.config.clip_norm)
        z_scores = modified_z_scores(norms, self.config.outlier_floor)
        combined = self._combine(rnd, coefs)

        tensors = dict(combined.tensors)
        for key in rnd.layout.dense:
            tensors[key] = sum((w * clipped_dense(rnd, key, i, float(c))
                                for i, (w, c) in enumerate(zip(rnd.weights, coefs, strict=True))),
                               start=np.zeros_like(rnd.tensors[0][key]))
        out = {k: v.astype(rnd.dtypes[k], copy=False) for k, v in sorted(tensors.items())}
        stacked = None
        if combined.stacked is not None:
            stacked = {k: v.astype(rnd.dtypes[k], copy=False)
                       for k, v in sorted(combined.stacked.items())}
            stacked.update({k: out[k] for k in rnd.layout.dense})
        report = self._report(rnd, float(scale), norms, coefs, z_scores, combined.layers)
        _log.info("aggregated mode=%s nodes=%d examples=%d residual=%.4g fedavg_error=%s "
                  "clipped=%s", report.mode, len(report.nodes), report.total_examples,
                  report.residual, report.fedavg_error, ",".join(report.clipped_nodes) or "-")
        for node in report.nodes:
            if node.outlier:
                _log.warning("outlier mode=%s node=%s update_norm=%.4g z=%.2f", report.mode,
                             node.node_id, node.update_norm, node.z_score)
        return AggregationResult(out, report, stacked)

    @abstractmethod
    def _combine(self, rnd: PreparedRound, coefs: Matrix) -> Combined:
        """Combine the LoRA pairs of a checked round, given each node's clip coefficient."""

    def _report(self, rnd: PreparedRound, scale: float, norms: Matrix, coefs: Matrix,
                z_scores: Matrix, layers: tuple[LayerOutcome, ...]) -> AggregationReport:
        nodes = tuple(
            NodeReport(node_id=n, num_examples=k, weight=float(w), update_norm=float(u),
                       clip_coefficient=float(c), z_score=float(z),
                       outlier=bool(z > self.config.outlier_z))
            for n, k, w, u, c, z in zip(rnd.node_ids, rnd.counts, rnd.weights, norms, coefs,
                                        z_scores, strict=True))
        layer_reports = tuple(
            LayerReport(prefix=lay.prefix, rank_in=lay.rank_in, rank_out=lay.rank_out,
                        exact_norm=scale * lay.exact_norm,
                        residual=relative(lay.error, lay.exact_norm),
                        fedavg_error=(None if lay.fedavg_error is None
                                      else relative(lay.fedavg_error, lay.exact_norm)))
            for lay in layers)
        total_norm = math.sqrt(sum(lay.exact_norm ** 2 for lay in layers))
        residual = relative(math.sqrt(sum(lay.error ** 2 for lay in layers)), total_norm)
        fedavg: float | None = None
        if layers and all(lay.fedavg_error is not None for lay in layers):
            fedavg = relative(math.sqrt(sum((lay.fedavg_error or 0.0) ** 2 for lay in layers)),
                               total_norm)
        return AggregationReport(mode=self.name, scale=scale, total_examples=sum(rnd.counts),
                                 nodes=nodes, layers=layer_reports, residual=residual,
                                 fedavg_error=fedavg)


AGGREGATORS: dict[str, type[Aggregator]] = {}

A = TypeVar("A", bound=type[Aggregator])


def register_aggregator(cls: A) -> A:
    """Class decorator: make a mode available to :func:`make_aggregator` by its ``name``."""
    if cls.name in AGGREGATORS:
        raise ValueError(f"aggregation mode {cls.name!r} is registered twice")
    AGGREGATORS[cls.name] = cls
    return cls


def make_aggregator(mode: str, config: AggregationConfig | None = None) -> Aggregator:
    """The aggregator registered as ``mode`` ("fedavg", "exact", "frozen-a")."""
    try:
        factory: Callable[[AggregationConfig | None], Aggregator] = AGGREGATORS[mode]
    except KeyError:
        raise ConfigError(f"unknown aggregation mode {mode!r}; known modes: "
                          f"{', '.join(sorted(AGGREGATORS))}") from None
    return factory(config)
