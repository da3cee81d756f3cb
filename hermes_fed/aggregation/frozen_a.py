"""``frozen-a``: A shared and never trained, only B averaged — exact, and a plain sum.

FFA-LoRA (Sun et al., 2024, arXiv 2403.12313) freezes every node's A at the same random
initialisation (one federation-wide seed). Then ``Σ w_i B_i A = (Σ w_i B_i) A``: averaging B
is the exact weighted mean of the products, a node sends half the tensors, and the
aggregate is a plain sum ``(Σ n_i B_i, Σ n_i)`` — which is all secure aggregation reveals
and what DP noise is added to. :class:`WeightedSum` is that mergeable sufficient statistic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hermes_fed.errors import AggregationError

from .adapters import Matrix, PreparedRound, a_key_of, is_lora_a
from .base import Aggregator, Combined, LayerOutcome, register_aggregator
from .lowrank import product_norm
from .records import ClientUpdate
from .robustness import clipped_factors


@dataclass(frozen=True, slots=True)
class WeightedSum:
    """``Σ n_i · T_i`` per tensor and ``Σ n_i``; add two to merge, :meth:`mean` to finish."""

    tensors: Mapping[str, np.ndarray]
    total_examples: int

    def __add__(self, other: WeightedSum) -> WeightedSum:
        if set(self.tensors) != set(other.tensors):
            missing = sorted(set(self.tensors) ^ set(other.tensors))
            raise AggregationError(f"cannot add weighted sums: tensor {missing[0]} is in only "
                                   "one of them")
        for key, value in self.tensors.items():
            if np.shape(value) != np.shape(other.tensors[key]):
                raise AggregationError(f"cannot add weighted sums: tensor {key} has shapes "
                                       f"{np.shape(value)} and {np.shape(other.tensors[key])}")
        return WeightedSum({k: np.asarray(v) + np.asarray(other.tensors[k])
                            for k, v in self.tensors.items()},
                           self.total_examples + other.total_examples)

    def mean(self) -> dict[str, np.ndarray]:
        """``Σ n_i T_i / Σ n_i`` per tensor."""
        if self.total_examples <= 0:
            raise AggregationError("weighted sum over 0 examples has no mean")
        return {k: np.asarray(v) / self.total_examples for k, v in self.tensors.items()}


def weighted_contribution(update: ClientUpdate) -> WeightedSum:
    """A node's share of the sum: ``n_i · T_i`` for every tensor but the frozen ``lora_A``.

    Computed on the node, so that secure aggregation (or DP noise) can act on it; float64
    keeps the sum of many nodes free of float32 rounding.
    """
    tensors = {k: update.num_examples * np.asarray(v, dtype=np.float64)
               for k, v in update.tensors.items() if not is_lora_a(k)}
    return WeightedSum(tensors, update.num_examples)


def weighted_sum(updates: Iterable[ClientUpdate]) -> WeightedSum:
    """The sum of the nodes' contributions (what a secure aggregator would return)."""
    parts = [weighted_contribution(u) for u in updates]
    if not parts:
        raise AggregationError("empty round: no client updates to sum")
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def finalize_frozen_a(summed: WeightedSum, shared_a: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The global adapter from a sum: ``B = Σ n_i B_i / Σ n_i`` beside the shared A tensors."""
    out: dict[str, np.ndarray] = dict(summed.mean())
    for key in summed.tensors:
        a_key = a_key_of(key)
        if a_key is None:
            continue
        if a_key not in shared_a:
            raise AggregationError(f"frozen-a needs the shared tensor {a_key}")
        out[a_key] = np.asarray(shared_a[a_key])
    return dict(sorted(out.items()))


@register_aggregator
class FrozenAAggregator(Aggregator):
    """FFA-LoRA: check that A is identical everywhere, average B by example weight (exact)."""

    name = "frozen-a"
    shared_a = True

    def _combine(self, rnd: PreparedRound, coefs: Matrix) -> Combined:
        # Σ w_i B_i rather than Σ n_i B_i / Σ n_i: the same mean, but a single node's B comes
        # back bit for bit (1.0 · B), which n · B / n does not guarantee.
        tensors: dict[str, Matrix] = {}
        layers: list[LayerOutcome] = []
        for pair in rnd.layout.pairs:
            a = rnd.tensors[0][pair.a_key]
            b = np.zeros_like(rnd.tensors[0][pair.b_key])
            for i, (w, c) in enumerate(zip(rnd.weights, coefs, strict=True)):
                b += w * clipped_factors(rnd, pair, i, float(c))[0]
            tensors[pair.a_key], tensors[pair.b_key] = a, b
            layers.append(LayerOutcome(pair.prefix, a.shape[0], a.shape[0], product_norm(b, a),
                                       0.0, None))
        return Combined(tensors, tuple(layers))
