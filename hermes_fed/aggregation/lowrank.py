"""Low-rank linear algebra through the factors, never forming a dense ``out × in`` matrix.

A product ``M = B @ A`` with ``B`` of shape ``(out, k)`` and ``A`` of shape ``(k, in)`` is
handled through thin QR decompositions ``B = Q_b R_b`` and ``Aᵀ = Q_a R_a``: then
``M = Q_b (R_b R_aᵀ) Q_aᵀ`` with orthonormal ``Q_b``, ``Q_a``, so ``M`` has the singular
values of the small ``k × k`` core ``R_b R_aᵀ`` and its singular vectors are those of the
core mapped through ``Q_b`` and ``Q_a`` (Halko, Martinsson & Tropp, 2011, arXiv 0909.4061).
Cost ``O((out + in)·k²)`` instead of ``O(out·in·min(out, in))`` for a dense SVD.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Matrix = NDArray[np.float64]


def _core(b: Matrix, a: Matrix) -> tuple[Matrix, Matrix, Matrix]:
    """Return ``(Q_b, core, Q_a)`` with ``B @ A == Q_b @ core @ Q_a.T``."""
    q_b, r_b = np.linalg.qr(b)
    q_a, r_a = np.linalg.qr(a.T)
    return q_b, r_b @ r_a.T, q_a


def product_norm(b: Matrix, a: Matrix) -> float:
    """Frobenius norm of ``B @ A`` computed through the factors.

    Orthonormal ``Q_b``, ``Q_a`` preserve the norm, so ``||B A||_F = ||R_b R_aᵀ||_F``;
    this avoids the cancellation of the Gram form ``trace(BᵀB · AAᵀ)`` when the product is
    a small difference of large terms.
    """
    if b.shape[1] == 0:
        return 0.0
    _, core, _ = _core(b, a)
    return float(np.linalg.norm(core))


def difference_norm(b1: Matrix, a1: Matrix, b2: Matrix, a2: Matrix) -> float:
    """``||B1 A1 − B2 A2||_F`` as the norm of the stacked product ``[B1 | −B2] [A1; A2]``."""
    return product_norm(np.hstack([b1, -b2]), np.vstack([a1, a2]))


def stack(blocks: Sequence[tuple[float, Matrix, Matrix]]) -> tuple[Matrix, Matrix]:
    """Stack weighted products into one: ``Σ w_i B_i A_i = [w_1 B_1 | …] @ [A_1; …]``.

    This is the exact aggregation of FLoRA (Wang et al., 2024, arXiv 2409.05976):
    the rank of the result is the sum of the blocks' ranks.
    """
    b = np.hstack([w * bi for w, bi, _ in blocks])
    a = np.vstack([ai for _, _, ai in blocks])
    return b, a


def _svd(matrix: Matrix) -> tuple[Matrix, Matrix, Matrix]:
    """Thin SVD; falls back from LAPACK ``gesdd`` to ``gesvd`` when ``gesdd`` fails.

    ``gesdd`` (numpy's driver) occasionally reports non-convergence on rank-deficient
    matrices — measured here on a 256 × 256 mean of three rank-16 products that ``gesvd``
    decomposes without trouble — and a stacked mean of products is rank-deficient by nature.
    """
    try:
        u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    except np.linalg.LinAlgError:
        import scipy.linalg

        u, s, vt = scipy.linalg.svd(matrix, full_matrices=False, lapack_driver="gesvd")
    return u, s, vt


def truncated_product_svd(b: Matrix, a: Matrix, rank: int) -> tuple[Matrix, Matrix, Matrix]:
    """Best rank-``rank`` factors of ``B @ A`` (Eckart–Young), via QR of the factors.

    Returns ``(B', A', s)`` with ``B'`` of shape ``(out, rank)``, ``A'`` of shape
    ``(rank, in)`` and ``s`` all singular values of ``B @ A`` (descending), so the relative
    residual is ``sqrt(Σ_{j>rank} s_j²) / sqrt(Σ s_j²)``. The singular values are split
    evenly, ``B' = U_r Σ_r^{1/2}`` and ``A' = Σ_r^{1/2} V_rᵀ``, so neither factor dominates
    the next round's training. When ``B @ A`` has fewer than ``rank`` singular values the
    missing directions are zero columns of ``B'`` and zero rows of ``A'``.
    """
    out_dim, in_dim = b.shape[0], a.shape[1]
    b_new = np.zeros((out_dim, rank))
    a_new = np.zeros((rank, in_dim))
    if b.shape[1] == 0:
        return b_new, a_new, np.zeros(0)
    q_b, core, q_a = _core(b, a)
    u, s, vt = _svd(core)
    k = min(rank, s.size)
    root = np.sqrt(s[:k])
    b_new[:, :k] = (q_b @ u[:, :k]) * root
    a_new[:k, :] = root[:, None] * (vt[:k] @ q_a.T)
    return b_new, a_new, s


def tail_energy(s: Matrix, rank: int) -> float:
    """``sqrt(Σ_{j>rank} s_j²)``: the Frobenius error of the best rank-``rank`` approximation."""
    return float(np.sqrt(np.sum(np.square(s[rank:]))))


def relative(error: float, norm: float) -> float:
    """``error / norm`` with ``0 / 0 = 0`` (an all-zero mean is matched exactly by zeros)."""
    if norm == 0.0:
        return 0.0 if error == 0.0 else float("inf")
    return error / norm
