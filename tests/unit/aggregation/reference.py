"""Dense numpy reference for the aggregation tests: forms every ``out × in`` matrix.

Independent of :mod:`hermes_fed.aggregation.lowrank` (no QR tricks): products are formed
densely and the optimum of rank r comes from ``np.linalg.svd`` of the dense mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from hermes_fed.aggregation import ClientUpdate

Matrix = NDArray[np.float64]

# (prefix, out, in): a Linear of the attention block and a down projection, peft names.
MODULES: tuple[tuple[str, int, int], ...] = (
    ("base_model.model.model.layers.0.self_attn.q_proj", 12, 10),
    ("base_model.model.model.layers.0.mlp.down_proj", 10, 16),
)


def a_key(prefix: str) -> str:
    return f"{prefix}.lora_A.weight"


def b_key(prefix: str) -> str:
    return f"{prefix}.lora_B.weight"


def random_adapter(rng: np.random.Generator, rank: int, *,
                   shared_a: Mapping[str, np.ndarray] | None = None,
                   dtype: type = np.float64) -> dict[str, np.ndarray]:
    """A LoRA adapter with random A (or the given shared A) and random non-zero B."""
    out: dict[str, np.ndarray] = {}
    for prefix, n_out, n_in in MODULES:
        a = (shared_a[a_key(prefix)] if shared_a is not None
             else rng.uniform(-1, 1, size=(rank, n_in)) / np.sqrt(n_in))
        out[a_key(prefix)] = np.asarray(a, dtype=dtype)
        out[b_key(prefix)] = rng.normal(size=(n_out, rank)).astype(dtype)
    return out


def delta(adapter: Mapping[str, np.ndarray], prefix: str, scale: float) -> Matrix:
    """Dense ``ΔW = scale · B @ A`` of one module."""
    return scale * (np.asarray(adapter[b_key(prefix)], dtype=np.float64)
                    @ np.asarray(adapter[a_key(prefix)], dtype=np.float64))


def exact_mean(updates: Sequence[ClientUpdate], prefix: str, scale: float) -> Matrix:
    """``Σ (n_i / N) ΔW_i`` formed densely."""
    total = sum(u.num_examples for u in updates)
    return sum((u.num_examples / total * delta(u.tensors, prefix, scale) for u in updates),
               start=np.zeros((1, 1)))


def best_rank(matrix: Matrix, rank: int) -> Matrix:
    """Eckart–Young: the closest rank-``rank`` matrix in Frobenius norm, by dense SVD."""
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vt[:rank]


def rel(x: Matrix, ref: Matrix) -> float:
    """Relative Frobenius error."""
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))
