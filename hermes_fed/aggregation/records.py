"""Records and configuration of LoRA aggregation: what goes in, what comes out.

An adapter is a ``Mapping[str, np.ndarray]`` keyed by peft state-dict names: for every
adapted module ``<prefix>.lora_A.weight`` of shape ``(r, in)`` and ``<prefix>.lora_B.weight``
of shape ``(out, r)``; its weight update is ``ΔW = scale · B @ A`` with ``scale = alpha / r``
(LoRA: Hu et al., 2021, arXiv 2106.09685).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class ClientUpdate:
    """One node's adapter after local training, with the example count that weights it."""

    node_id: str
    num_examples: int
    tensors: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, str) or not self.node_id:
            raise ValueError(f"ClientUpdate.node_id must be a non-empty str, got {self.node_id!r}")
        if (isinstance(self.num_examples, bool) or not isinstance(self.num_examples, int)
                or self.num_examples < 0):
            raise ValueError(f"ClientUpdate.num_examples of node {self.node_id} must be an "
                             f"integer >= 0, got {self.num_examples!r}")


@dataclass(frozen=True, slots=True)
class AggregationConfig:
    """How updates are combined; every default is documented in its ``help``."""

    clip_norm: float | None = field(default=None, metadata={
        "help": "Bound on each node's update norm ||ΔW_i − ΔW_global||_F over all layers "
                "(scaled by alpha/r); larger updates are shrunk onto the bound. None: no "
                "clipping."})
    outlier_z: float = field(default=3.5, metadata={
        "help": "A node whose update norm has a modified z-score (median/MAD, Iglewicz & "
                "Hoaglin 1993) above this is reported as an outlier (reported, not dropped)."})
    outlier_floor: float = field(default=0.1, metadata={
        "help": "Least spread the outlier z-score divides by, as a fraction of the median "
                "update norm; keeps a round of near-identical nodes (tiny MAD, usual with 3 "
                "nodes) from flagging ordinary variation. With the default a node is flagged "
                "once its norm is ~35% above the median, when the others agree closely."})
    rank: int | None = field(default=None, metadata={
        "help": "Global rank that `exact` re-compresses to; None: the previous global "
                "adapter's rank, else the clients' common rank."})
    keep_stacked: bool = field(default=False, metadata={
        "help": "`exact` also returns the un-compressed stacked adapter (rank = sum of the "
                "clients' ranks; load it with alpha = scale * that rank)."})
    compare_fedavg: bool = field(default=True, metadata={
        "help": "`exact` also reports the error factor averaging would have made."})

    def __post_init__(self) -> None:
        if self.clip_norm is not None and (isinstance(self.clip_norm, bool)
                                           or not isinstance(self.clip_norm, int | float)
                                           or not math.isfinite(self.clip_norm)
                                           or self.clip_norm <= 0):
            raise ValueError("AggregationConfig.clip_norm must be None or a finite number > 0, "
                             f"got {self.clip_norm!r}")
        if (isinstance(self.outlier_z, bool) or not isinstance(self.outlier_z, int | float)
                or not self.outlier_z > 0):
            raise ValueError(f"AggregationConfig.outlier_z must be a number > 0, "
                             f"got {self.outlier_z!r}")
        if (isinstance(self.outlier_floor, bool)
                or not isinstance(self.outlier_floor, int | float)
                or not 0 <= self.outlier_floor < math.inf):
            raise ValueError(f"AggregationConfig.outlier_floor must be a finite number >= 0, "
                             f"got {self.outlier_floor!r}")
        if self.rank is not None and (isinstance(self.rank, bool)
                                      or not isinstance(self.rank, int) or self.rank < 1):
            raise ValueError(f"AggregationConfig.rank must be None or an integer >= 1, "
                             f"got {self.rank!r}")


@dataclass(frozen=True, slots=True)
class NodeReport:
    """What aggregation saw of one node (no data, only counts and norms).

    ``update_norm`` is ``||ΔW_i − ΔW_global||_F`` before clipping, summed over layers;
    ``clip_coefficient`` is the factor the update was shrunk by (1.0: not clipped);
    ``z_score`` is the modified z-score of ``update_norm`` among the round's nodes.
    """

    node_id: str
    num_examples: int
    weight: float
    update_norm: float
    clip_coefficient: float
    z_score: float
    outlier: bool

    @property
    def clipped(self) -> bool:
        return self.clip_coefficient < 1.0


@dataclass(frozen=True, slots=True)
class LayerReport:
    """Per adapted module: ranks in and out, and how far the result is from the exact mean.

    ``residual`` is ``||M − B'A'||_F / ||M||_F`` with ``M`` the exact weighted mean of the
    (clipped) products ``B_i A_i`` and ``B'A'`` the returned adapter's product;
    ``fedavg_error`` the same for factor averaging (None where not computed).
    """

    prefix: str
    rank_in: int
    rank_out: int
    exact_norm: float
    residual: float
    fedavg_error: float | None


@dataclass(frozen=True, slots=True)
class AggregationReport:
    """The audit of one aggregation: per node, per layer, and overall figures.

    Overall ``residual`` and ``fedavg_error`` are relative Frobenius errors over all layers
    together: ``sqrt(Σ_l err_l²) / sqrt(Σ_l ||M_l||²)``, with ``||M_l||`` scaled by alpha/r.
    """

    mode: str
    scale: float
    total_examples: int
    nodes: tuple[NodeReport, ...]
    layers: tuple[LayerReport, ...]
    residual: float
    fedavg_error: float | None

    @property
    def update_norms(self) -> dict[str, float]:
        return {n.node_id: n.update_norm for n in self.nodes}

    @property
    def clipped_nodes(self) -> tuple[str, ...]:
        return tuple(n.node_id for n in self.nodes if n.clipped)

    @property
    def outliers(self) -> tuple[str, ...]:
        return tuple(n.node_id for n in self.nodes if n.outlier)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for round reports (floats, ints and strings only)."""
        return {
            "mode": self.mode,
            "scale": self.scale,
            "total_examples": self.total_examples,
            "residual": self.residual,
            "fedavg_error": self.fedavg_error,
            "clipped_nodes": list(self.clipped_nodes),
            "outliers": list(self.outliers),
            "nodes": [
                {"node_id": n.node_id, "num_examples": n.num_examples, "weight": n.weight,
                 "update_norm": n.update_norm, "clip_coefficient": n.clip_coefficient,
                 "z_score": n.z_score, "outlier": n.outlier}
                for n in self.nodes
            ],
            "layers": [
                {"prefix": lay.prefix, "rank_in": lay.rank_in, "rank_out": lay.rank_out,
                 "exact_norm": lay.exact_norm, "residual": lay.residual,
                 "fedavg_error": lay.fedavg_error}
                for lay in self.layers
            ],
        }


@dataclass(frozen=True, slots=True)
class AggregationResult:
    """The new global adapter (same keys, shapes and dtypes as the inputs) and its report.

    ``stacked`` is the un-compressed adapter of `exact` when asked for (rank = Σ r_i).
    """

    tensors: dict[str, np.ndarray]
    report: AggregationReport
    stacked: dict[str, np.ndarray] | None = None
