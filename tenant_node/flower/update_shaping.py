"""A node's update before it leaves, in privacy rounds: delta, clipping, client-side noise.

Pure numpy, no Flower. The update is ``Δ = T_local − T_global`` over the tensors the node
sends (B only in frozen-a). DP clips it to ``‖Δ‖₂ ≤ C`` *on the node* (DP-FedAvg, McMahan
et al. 2018, arXiv:1710.06963): under SecAgg+ the coordinator never sees ``Δ``, so the
clipping must happen before the node's contribution is masked. In client mode the node
also adds ``N(0, σ²)``: ``σ = z·C`` when the coordinator sees the update alone, ``z·C/√m``
under SecAgg+ so that the sum of ``m`` nodes carries ``z·C`` (the coordinator decides σ:
``coordinator.rounds.dp.PrivacySettings.node_noise_std``).
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


@dataclass(frozen=True, slots=True)
class ShapedUpdate:
    """The delta to send and what shaping did (kept on the node: norms reveal the update)."""

    delta: dict[str, np.ndarray]
    norm: float
    clipped_norm: float
    noise_std: float


def shape_update(local: Mapping[str, np.ndarray], global_adapter: Mapping[str, np.ndarray], *,
                 clip: float = 0.0, noise_std: float = 0.0,
                 rng: np.random.Generator | None = None) -> ShapedUpdate:
    """``Δ = local − global``, clipped to ``clip`` (0: not clipped), plus ``N(0, noise_std²)``.

    Raises
    ------
    FederationError
        When ``local`` names a tensor the global adapter does not hold.
    """
    missing = sorted(set(local) - set(global_adapter))
    if missing:
        raise FederationError(f"local tensor {missing[0]} is not in the global adapter")
    delta = {k: np.asarray(v, dtype=np.float64) - np.asarray(global_adapter[k], dtype=np.float64)
             for k, v in sorted(local.items())}
    norm = global_norm(delta)
    if clip > 0:
        delta, _ = clip_update(delta, clip)
    clipped_norm = global_norm(delta)
    if noise_std > 0:
        generator = rng if rng is not None else np.random.default_rng()  # OS entropy
        delta = add_gaussian_noise(delta, noise_std, generator)
    return ShapedUpdate(delta=delta, norm=norm, clipped_norm=clipped_norm, noise_std=noise_std)


def apply_delta(global_adapter: Mapping[str, np.ndarray],
                delta: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``global + Δ`` for the tensors in ``Δ``, in the global tensors' dtypes."""
    return {k: (np.asarray(global_adapter[k], dtype=np.float64) + v).astype(
        np.asarray(global_adapter[k]).dtype) for k, v in delta.items()}


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
