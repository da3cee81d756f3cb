"""LoRA-aware aggregation maths: pure numpy, no Flower, no store (DESIGN.md §7).

Modes, by name (:func:`make_aggregator`):

- ``fedavg`` — A and B averaged apart (FedIT/OpenFedLLM/FlowerTune baseline; inexact, its
  error against the exact mean is reported);
- ``exact`` — the weighted mean of ``B·A`` by stacking (FLoRA), re-compressed to rank r by
  a truncated SVD through QR of the factors, residual reported;
- ``frozen-a`` — A shared and fixed (FFA-LoRA), B averaged: exact, and a plain sum
  (:class:`WeightedSum`) for secure aggregation.
"""

from .base import AGGREGATORS, Aggregator, make_aggregator, register_aggregator
from .exact import ExactStackingAggregator
from .fedavg import FedAvgAggregator
from .frozen_a import (
    FrozenAAggregator,
    WeightedSum,
    finalize_frozen_a,
    weighted_contribution,
    weighted_sum,
)
from .records import (
    AggregationConfig,
    AggregationReport,
    AggregationResult,
    ClientUpdate,
    LayerReport,
    NodeReport,
)

__all__ = [
    "AGGREGATORS",
    "AggregationConfig",
    "AggregationReport",
    "AggregationResult",
    "Aggregator",
    "ClientUpdate",
    "ExactStackingAggregator",
    "FedAvgAggregator",
    "FrozenAAggregator",
    "LayerReport",
    "NodeReport",
    "WeightedSum",
    "finalize_frozen_a",
    "make_aggregator",
    "register_aggregator",
    "weighted_contribution",
    "weighted_sum",
]
