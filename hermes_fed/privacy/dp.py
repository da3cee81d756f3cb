"""Differential privacy for federated rounds: clipping, Gaussian noise, an RDP accountant.

User-level (here: tenant-level) DP as in DP-FedAvg (McMahan et al. 2018, arXiv:1710.06963):
each node's update is clipped to L2 norm ``C``; the coordinator (or each node, in the
client-side mode) adds Gaussian noise of standard deviation ``z·C`` to the sum, where
``z`` is the noise multiplier. Privacy loss is tracked in Rényi DP for the sampled Gaussian
mechanism (Mironov, Talwar, Zhang 2019, arXiv:1908.10530) at integer orders and converted
to (epsilon, delta) with the bound of Balle et al. 2020 (arXiv:1905.09982, Thm. 21), the
same conversion Opacus and TF-Privacy use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import gammaln, logsumexp

from hermes_fed.errors import PrivacyBudgetExhausted

DEFAULT_ORDERS: tuple[int, ...] = (*range(2, 64), 80, 96, 128, 192, 256, 512)


@dataclass(frozen=True, slots=True)
class DPConfig:
    """How a round is privatised. ``mode="off"`` disables DP."""

    mode: str = field(default="off", metadata={"help": "off | server | client: who adds the noise"})
    clip_norm: float = field(default=1.0, metadata={"help": "L2 bound C on each node's update"})
    noise_multiplier: float = field(default=1.0, metadata={"help": "z: noise std is z*C on the sum"})
    delta: float = field(default=1e-5, metadata={"help": "delta of the reported (epsilon, delta)"})
    epsilon_budget: float | None = field(
        default=None, metadata={"help": "stop rounds once cumulative epsilon would exceed this"}
    )

    def __post_init__(self) -> None:
        if self.mode not in ("off", "server", "client"):
            raise ValueError(f"dp.mode must be off, server or client, got {self.mode!r}")
        if not self.clip_norm > 0:
            raise ValueError(f"dp.clip_norm must be > 0, got {self.clip_norm!r}")
        if self.mode != "off" and not self.noise_multiplier > 0:
            raise ValueError(f"dp.noise_multiplier must be > 0 when DP is on, got {self.noise_multiplier!r}")
        if not 0 < self.delta < 1:
            raise ValueError(f"dp.delta must be in (0, 1), got {self.delta!r}")
        if self.epsilon_budget is not None and not self.epsilon_budget > 0:
            raise ValueError(f"dp.epsilon_budget must be > 0, got {self.epsilon_budget!r}")


# --- mechanism ---------------------------------------------------------------------------
def global_norm(tensors: Mapping[str, np.ndarray]) -> float:
    return math.sqrt(sum(float(np.sum(np.square(t, dtype=np.float64))) for t in tensors.values()))


def clip_update(tensors: Mapping[str, np.ndarray], clip_norm: float) -> tuple[dict[str, np.ndarray], float]:
    """Scale the update so its global L2 norm is at most ``clip_norm``; returns (update, norm before)."""
    norm = global_norm(tensors)
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return {k: (v * scale).astype(v.dtype, copy=False) for k, v in tensors.items()}, norm


def add_gaussian_noise(
    tensors: Mapping[str, np.ndarray], std: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    return {k: (v + rng.normal(0.0, std, size=v.shape)).astype(v.dtype) for k, v in tensors.items()}


# --- accountant -------------------------------------------------------------------------
def _rdp_sampled_gaussian_int(q: float, sigma: float, alpha: int) -> float:
    """RDP of the sampled Gaussian mechanism at integer order ``alpha`` (MTZ 2019, Sec. 3.3).

    log A_alpha = log sum_k C(alpha,k) (1-q)^(alpha-k) q^k exp((k^2-k)/(2 sigma^2)); RDP = log A / (alpha-1).
    """
    if q == 0:
        return 0.0
    if q == 1.0:
        return alpha / (2 * sigma**2)
    k = np.arange(alpha + 1, dtype=np.float64)
    log_binom = gammaln(alpha + 1) - gammaln(k + 1) - gammaln(alpha - k + 1)
    terms = log_binom + (alpha - k) * math.log1p(-q) + k * math.log(q) + (k * k - k) / (2 * sigma**2)
    return float(logsumexp(terms)) / (alpha - 1)


def rdp_to_epsilon(orders: Sequence[int], rdp: Sequence[float], delta: float) -> tuple[float, int]:
    """The smallest epsilon over orders (Balle et al. 2020, Thm. 21) and the order achieving it."""
    best, best_order = math.inf, orders[0]
    for alpha, r in zip(orders, rdp, strict=True):
        eps = r + math.log1p(-1 / alpha) - (math.log(delta) + math.log(alpha)) / (alpha - 1)
        if eps < best:
            best, best_order = eps, alpha
    return max(best, 0.0), best_order


@dataclass(slots=True)
class RdpAccountant:
    """Accumulates the Rényi DP of repeated (sub)sampled Gaussian rounds."""

    orders: tuple[int, ...] = DEFAULT_ORDERS
    rdp: list[float] = field(default_factory=list)
    rounds: int = 0

    def __post_init__(self) -> None:
        if not self.rdp:
            self.rdp = [0.0] * len(self.orders)

    @staticmethod
    def round_rdp(noise_multiplier: float, sampling_rate: float, orders: Sequence[int]) -> list[float]:
        if not 0 < sampling_rate <= 1:
            raise ValueError(f"sampling_rate must be in (0, 1], got {sampling_rate!r}")
        if not noise_multiplier > 0:
            raise ValueError(f"noise_multiplier must be > 0, got {noise_multiplier!r}")
        return [_rdp_sampled_gaussian_int(sampling_rate, noise_multiplier, a) for a in orders]

    def step(self, noise_multiplier: float, sampling_rate: float = 1.0, rounds: int = 1) -> None:
        per = self.round_rdp(noise_multiplier, sampling_rate, self.orders)
        self.rdp = [r + rounds * p for r, p in zip(self.rdp, per, strict=True)]
        self.rounds += rounds

    def epsilon(self, delta: float) -> float:
        return rdp_to_epsilon(self.orders, self.rdp, delta)[0]

    def epsilon_after(
        self, noise_multiplier: float, sampling_rate: float, delta: float, rounds: int = 1
    ) -> float:
        """Epsilon if ``rounds`` more rounds ran (without recording them)."""
        per = self.round_rdp(noise_multiplier, sampling_rate, self.orders)
        return rdp_to_epsilon(
            self.orders, [r + rounds * p for r, p in zip(self.rdp, per, strict=True)], delta
        )[0]

    def charge(self, config: DPConfig, sampling_rate: float = 1.0) -> float:
        """Record one round under ``config``; refuse it if the budget would be exceeded.

        Returns the cumulative epsilon after the round. Raises ``PrivacyBudgetExhausted``
        before anything is recorded when the budget would be passed.
        """
        after = self.epsilon_after(config.noise_multiplier, sampling_rate, config.delta)
        if config.epsilon_budget is not None and after > config.epsilon_budget:
            raise PrivacyBudgetExhausted(
                f"another round would bring epsilon to {after:.3f} > budget {config.epsilon_budget:.3f} "
                f"(delta={config.delta:g}, after {self.rounds} rounds); raise dp.epsilon_budget or "
                "dp.noise_multiplier to continue"
            )
        self.step(config.noise_multiplier, sampling_rate)
        return after
