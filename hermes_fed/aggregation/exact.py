"""``exact``: the weighted mean of the products ``B_i A_i`` by stacking, then re-compressed.

Stacking (FLoRA: Wang et al., 2024, arXiv 2409.05976) writes the exact weighted mean as one
adapter of rank ``Σ r_i``: ``M = [w_1 B_1 | … | w_k B_k] @ [A_1; …; A_k]``. To keep the
global rank ``r`` the stack is re-compressed to its best rank-``r`` approximation
(Eckart–Young) by a truncated SVD computed through QR of the stacked factors
(:mod:`.lowrank`); the dense ``out × in`` matrix is never formed. The residual
``||M − B'A'||_F / ||M||_F`` is reported per module and overall. When the stack's rank fits
in ``r`` (a single node, for one) it is returned as is, zero-padded: exact.
"""

from __future__ import annotations

import numpy as np

from hermes_fed.errors import AggregationError

from .adapters import LoraPair, Matrix, PreparedRound, rank_of
from .base import Aggregator, Combined, LayerOutcome, register_aggregator
from .fedavg import fedavg_error
from .lowrank import product_norm, stack, tail_energy, truncated_product_svd
from .robustness import clipped_blocks


@register_aggregator
class ExactStackingAggregator(Aggregator):
    """Exact weighted mean of ``B·A`` (stacking), re-compressed to rank ``r`` by SVD."""

    name = "exact"

    def _target_rank(self, rnd: PreparedRound, pair: LoraPair) -> int:
        if self.config.rank is not None:
            return self.config.rank
        if rnd.previous is not None:
            return int(rnd.previous[pair.a_key].shape[0])
        rank = rank_of(rnd, pair)
        if rank is None:
            raise AggregationError(f"exact: the nodes' ranks of tensor {pair.a_key} differ and "
                                   "no global rank is known; set AggregationConfig.rank")
        return rank

    def _combine(self, rnd: PreparedRound, coefs: Matrix) -> Combined:
        tensors: dict[str, Matrix] = {}
        stacked: dict[str, Matrix] = {}
        layers: list[LayerOutcome] = []
        for pair in rnd.layout.pairs:
            rank = self._target_rank(rnd, pair)
            b_s, a_s = stack(clipped_blocks(rnd, pair, coefs))
            rank_in = b_s.shape[1]
            if rank_in <= rank:
                b_new = np.zeros((b_s.shape[0], rank))
                a_new = np.zeros((rank, a_s.shape[1]))
                b_new[:, :rank_in], a_new[:rank_in, :] = b_s, a_s
                exact_norm, error = product_norm(b_s, a_s), 0.0
            else:
                b_new, a_new, s = truncated_product_svd(b_s, a_s, rank)
                exact_norm = float(np.sqrt(np.sum(np.square(s))))
                error = tail_energy(s, rank)
            fedavg = None
            common = rank_of(rnd, pair)
            if self.config.compare_fedavg and common is not None and (
                    rnd.previous is None or rnd.previous[pair.a_key].shape[0] == common):
                fedavg = fedavg_error(rnd, pair, coefs, b_s, a_s)
            tensors[pair.b_key], tensors[pair.a_key] = b_new, a_new
            if self.config.keep_stacked:
                stacked[pair.b_key], stacked[pair.a_key] = b_s, a_s
            layers.append(LayerOutcome(pair.prefix, rank_in, rank, exact_norm, error, fedavg))
        return Combined(tensors, tuple(layers), stacked if self.config.keep_stacked else None)
