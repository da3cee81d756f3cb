"""Robust aggregation: update norms through the factors, norm clipping, an outlier report.

A node's update is ``ΔW_i − ΔW_global`` with ``ΔW = scale · B @ A`` per module (plus the
plain difference of any dense tensor); its norm is the Frobenius norm over all modules,
computed through the factors. Clipping shrinks an update onto a bound ``C`` by the
coefficient ``c_i = min(1, C / ||ΔW_i − ΔW_global||)`` (as in DP-FedAvg: McMahan et al.,
2018, arXiv 1710.06963, Algorithm 1), so the clipped update is
``ΔW_global + c_i (ΔW_i − ΔW_global)``. Outliers are flagged by the modified z-score
``0.6745 (x − median) / MAD`` (Iglewicz & Hoaglin, 1993) of the update norms.
"""

from __future__ import annotations

import numpy as np

from .adapters import LoraPair, Matrix, PreparedRound
from .lowrank import difference_norm, product_norm

# 0.6745 = Φ⁻¹(0.75) makes the MAD a consistent estimate of σ for normal data; when more
# than half the norms coincide the MAD is 0 and the mean absolute deviation (× √(π/2)) is
# used instead, the fallback of IBM SPSS's robust z-score.
_MAD_TO_SIGMA = 0.6745
_MEAN_AD_TO_SIGMA = 1.253314


def update_norms(rnd: PreparedRound, scale: float) -> Matrix:
    """``||ΔW_i − ΔW_global||_F`` per node over all modules (``ΔW_global = 0`` without one)."""
    squares = np.zeros(len(rnd.node_ids))
    prev = rnd.previous
    for i, t in enumerate(rnd.tensors):
        total = 0.0
        for pair in rnd.layout.pairs:
            b, a = t[pair.b_key], t[pair.a_key]
            if prev is None:
                norm = product_norm(b, a)
            else:
                norm = difference_norm(b, a, prev[pair.b_key], prev[pair.a_key])
            total += (scale * norm) ** 2
        for key in rnd.layout.dense:
            delta = t[key] if prev is None else t[key] - prev[key]
            total += float(np.sum(np.square(delta)))
        squares[i] = total
    return np.sqrt(squares)


def clip_coefficients(norms: Matrix, bound: float | None) -> Matrix:
    """``c_i = min(1, bound / norm_i)``; all ones when ``bound`` is None."""
    coefs = np.ones_like(norms)
    if bound is not None:
        over = norms > bound
        coefs[over] = bound / norms[over]
    return coefs


def modified_z_scores(values: Matrix, floor: float = 0.0) -> Matrix:
    """Robust z-scores ``(x − median) / σ̂`` with ``σ̂ = MAD / 0.6745``.

    ``σ̂`` falls back to ``1.253314 · mean |x − median|`` when the MAD is 0, and is never
    below ``floor · |median|``: with three nodes the MAD is the smaller of two deviations,
    so without a floor ordinary variation among near-identical nodes scores in the tens.
    All zero when every value is equal.
    """
    median = float(np.median(values))
    deviation = np.abs(values - median)
    mad = float(np.median(deviation))
    sigma = mad / _MAD_TO_SIGMA if mad > 0 else _MEAN_AD_TO_SIGMA * float(np.mean(deviation))
    sigma = max(sigma, floor * abs(median))
    if sigma == 0.0:
        return np.zeros_like(values)
    return (values - median) / sigma


def clipped_blocks(rnd: PreparedRound, pair: LoraPair,
                   coefs: Matrix) -> list[tuple[float, Matrix, Matrix]]:
    """The exact weighted mean of the clipped products as stackable ``(w, B, A)`` blocks.

    ``Σ w_i [ΔW_g + c_i (ΔW_i − ΔW_g)] = Σ w_i c_i B_i A_i + (Σ w_i (1 − c_i)) B_g A_g``:
    one block per node plus, when something was clipped, one for the previous global.
    """
    blocks = [(float(w * c), t[pair.b_key], t[pair.a_key])
              for w, c, t in zip(rnd.weights, coefs, rnd.tensors, strict=True)]
    rest = float(np.sum(rnd.weights * (1.0 - coefs)))
    if rnd.previous is not None and rest > 0.0:
        blocks.append((rest, rnd.previous[pair.b_key], rnd.previous[pair.a_key]))
    return blocks


def clipped_factors(rnd: PreparedRound, pair: LoraPair, i: int,
                    coef: float) -> tuple[Matrix, Matrix]:
    """Node ``i``'s factors with their deltas from the global shrunk by ``coef``.

    ``B' = B_g + c (B_i − B_g)`` and ``A' = A_g + c (A_i − A_g)``: exact for frozen-a (A does
    not move), first-order for factor averaging. Without a previous adapter only B is
    scaled, so that ``B'A' = c B_i A_i`` exactly.
    """
    b, a = rnd.tensors[i][pair.b_key], rnd.tensors[i][pair.a_key]
    if coef >= 1.0:
        return b, a
    if rnd.previous is None:
        return coef * b, a
    b_g, a_g = rnd.previous[pair.b_key], rnd.previous[pair.a_key]
    return b_g + coef * (b - b_g), a_g + coef * (a - a_g)


def clipped_dense(rnd: PreparedRound, key: str, i: int, coef: float) -> Matrix:
    """A dense tensor with its delta from the global shrunk by ``coef``."""
    value = rnd.tensors[i][key]
    if coef >= 1.0:
        return value
    if rnd.previous is None:
        return coef * value
    return rnd.previous[key] + coef * (value - rnd.previous[key])
