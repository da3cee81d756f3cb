"""A federated update under differential privacy: its delta, clipping, noise (pure numpy).

The update of a node is ``Δ = T_local − T_reference`` over the tensors it sends (B only
in frozen-a). DP-FedAvg (McMahan et al. 2018, arXiv:1710.06963) clips it to ``‖Δ‖₂ ≤ C``
and adds Gaussian noise to the sum of the clipped updates. The same maths serves both
sides: the coordinator clips what it receives (server-side DP, :func:`clip_to_reference`),
a node clips and noises what it sends (client-side DP and SecAgg+, :func:`shape_update`).
SecAgg+ then quantises every value into ``[-R, R]`` (Flower clips silently outside it), so
:func:`check_secagg_range` refuses an update that would be distorted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hermes_fed.errors import FederationError
from hermes_fed.privacy.dp import add_gaussian_noise, clip_update, global_norm


def update_delta(tensors: Mapping[str, np.ndarray],
                 reference: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``T − reference`` in float64, for the tensors of ``tensors`` (sorted by name).

    Raises
    ------
    FederationError
        When ``tensors`` names a tensor the reference does not hold.
    """
    missing = sorted(set(tensors) - set(reference))
    if missing:
        raise FederationError(f"tensor {missing[0]} is not in the reference adapter")
    return {k: np.asarray(v, dtype=np.float64) - np.asarray(reference[k], dtype=np.float64)
            for k, v in sorted(tensors.items())}


def apply_delta(reference: Mapping[str, np.ndarray],
                delta: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``reference + Δ`` for the tensors in ``Δ``, in the reference tensors' dtypes."""
    return {k: (np.asarray(reference[k], dtype=np.float64) + v).astype(
        np.asarray(reference[k]).dtype) for k, v in delta.items()}


@dataclass(frozen=True, slots=True)
class ShapedUpdate:
    """The delta to send and what shaping did (kept on the node: norms reveal the update)."""

    delta: dict[str, np.ndarray]
    norm: float
    clipped_norm: float
    noise_std: float


def shape_update(local: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], *,
                 clip: float = 0.0, noise_std: float = 0.0,
                 rng: np.random.Generator | None = None) -> ShapedUpdate:
    """``Δ = local − reference``, clipped to ``clip`` (0: not clipped), plus ``N(0, noise_std²)``."""
    delta = update_delta(local, reference)
    norm = global_norm(delta)
    if clip > 0:
        delta, _ = clip_update(delta, clip)
    clipped_norm = global_norm(delta)
    if noise_std > 0:
        generator = rng if rng is not None else np.random.default_rng()  # OS entropy
        delta = add_gaussian_noise(delta, noise_std, generator)
    return ShapedUpdate(delta=delta, norm=norm, clipped_norm=clipped_norm, noise_std=noise_std)


def clip_to_reference(tensors: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                      clip: float) -> tuple[dict[str, np.ndarray], float, float]:
    """``reference + clip(T − reference)``; returns it, ``‖T − ref‖`` and the clipped norm.

    ``clip = math.inf`` measures without clipping.
    """
    shaped = shape_update(tensors, reference, clip=clip if math.isfinite(clip) else 0.0)
    out = {k: (np.asarray(reference[k], dtype=np.float64) + v).astype(
        np.asarray(tensors[k]).dtype) for k, v in shaped.delta.items()}
    return out, shaped.norm, shaped.clipped_norm


def check_secagg_range(delta: Mapping[str, np.ndarray], clipping_range: float) -> float:
    """The largest ``|value|``; refuses a delta that SecAgg+ quantisation would clip."""
    largest = max((float(np.max(np.abs(v))) for v in delta.values() if v.size), default=0.0)
    if not math.isfinite(largest):
        raise FederationError("the update holds NaN or inf; nothing is sent")
    if largest > clipping_range:
        raise FederationError(
            f"an update value reaches {largest:.4g}, beyond the SecAgg+ clipping range "
            f"{clipping_range:g}: it would be clipped silently; raise secagg-clipping-range "
            "or clip the update (dp-clip)")
    return largest
