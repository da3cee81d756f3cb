"""``fedavg``: average the A and B factors separately — the inexact baseline.

This is how FedIT (Zhang et al., 2023, arXiv 2305.05644), OpenFedLLM (Ye et al., 2024,
arXiv 2402.06954) and FlowerTune aggregate LoRA: FedAvg (McMahan et al., 2017,
arXiv 1602.05629) applied to each factor, ``B̄ = Σ w_i B_i`` and ``Ā = Σ w_i A_i``. But
``B̄ Ā ≠ Σ w_i B_i A_i``: the cross terms ``w_i w_j B_i A_j`` do not vanish. The error against
the exact weighted mean is computed through the factors and reported, never hidden.
"""

from __future__ import annotations

import numpy as np

from hermes_fed.errors import AggregationError

from .adapters import LoraPair, Matrix, PreparedRound, rank_of
from .base import Aggregator, Combined, LayerOutcome, register_aggregator
from .lowrank import difference_norm, product_norm, stack
from .robustness import clipped_blocks, clipped_factors


def average_factors(rnd: PreparedRound, pair: LoraPair, coefs: Matrix) -> tuple[Matrix, Matrix]:
    """``(Σ w_i B_i', Σ w_i A_i')`` over the nodes' clipped factors."""
    b = np.zeros_like(rnd.tensors[0][pair.b_key])
    a = np.zeros_like(rnd.tensors[0][pair.a_key])
    for i, (w, c) in enumerate(zip(rnd.weights, coefs, strict=True)):
        b_i, a_i = clipped_factors(rnd, pair, i, float(c))
        b += w * b_i
        a += w * a_i
    return b, a


def fedavg_error(rnd: PreparedRound, pair: LoraPair, coefs: Matrix,
                 exact_b: Matrix, exact_a: Matrix) -> float:
    """``||B̄ Ā − M||_F`` with ``M = exact_b @ exact_a`` the exact (stacked) mean."""
    b, a = average_factors(rnd, pair, coefs)
    return difference_norm(b, a, exact_b, exact_a)


@register_aggregator
class FedAvgAggregator(Aggregator):
    """Average A and B apart, weighted by example count; the error vs exact is reported."""

    name = "fedavg"

    def _combine(self, rnd: PreparedRound, coefs: Matrix) -> Combined:
        tensors: dict[str, Matrix] = {}
        layers: list[LayerOutcome] = []
        for pair in rnd.layout.pairs:
            rank = rank_of(rnd, pair)
            if rank is None:
                ranks = {n: t[pair.a_key].shape[0]
                         for n, t in zip(rnd.node_ids, rnd.tensors, strict=True)}
                raise AggregationError(f"fedavg cannot average tensor {pair.a_key} of "
                                       f"different ranks {ranks}; use mode 'exact'")
            if rnd.previous is not None and rnd.previous[pair.a_key].shape[0] != rank:
                raise AggregationError(
                    f"fedavg: tensor {pair.a_key} has rank {rank} on the nodes but "
                    f"{rnd.previous[pair.a_key].shape[0]} in the previous global adapter")
            b, a = average_factors(rnd, pair, coefs)
            exact_b, exact_a = stack(clipped_blocks(rnd, pair, coefs))
            error = difference_norm(b, a, exact_b, exact_a)
            tensors[pair.b_key], tensors[pair.a_key] = b, a
            layers.append(LayerOutcome(pair.prefix, exact_b.shape[1], rank,
                                       product_norm(exact_b, exact_a), error, error))
        return Combined(tensors, tuple(layers))
