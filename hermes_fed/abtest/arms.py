"""Mergeable sufficient statistics of one A/B arm (GrowthBook gbstats style).

A node never sends outcomes, only ``n``, ``sum`` and ``sumsq`` of the metric per arm (and,
for CUPED, the sums of a pre-period covariate ``x``: ``sum_x``, ``sum_x2``, ``sum_xy``).
Records add, so per-round or per-node figures combine without raw data.

Invariants
----------
AB1. ``ArmStats`` addition is associative and commutative, and ``ArmStats()`` (n = 0) is its
     identity; the mean and variance of a sum equal those of the concatenated samples.
AB2. Covariate sums are all present or all absent; adding an arm with covariate sums to a
     non-empty arm without them raises, rather than silently dropping the covariate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from hermes_fed.errors import InsufficientDataError

__all__ = ["ArmStats", "TenantArms"]


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"ArmStats.{name} must be finite, got {value!r}")


@dataclass(frozen=True, slots=True)
class ArmStats:
    """Sufficient statistics of one arm: count, sum and sum of squares of the metric ``y``.

    Parameters
    ----------
    n : int
        Number of units (sessions) observed.
    sum, sumsq : float
        ``Σy`` and ``Σy²``.
    sum_x, sum_x2, sum_xy : float or None
        ``Σx``, ``Σx²`` and ``Σxy`` of the pre-period covariate for CUPED; all three or none.
    """

    n: int = 0
    sum: float = 0.0
    sumsq: float = 0.0
    sum_x: float | None = None
    sum_x2: float | None = None
    sum_xy: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 0:
            raise ValueError(f"ArmStats.n must be an int >= 0, got {self.n!r}")
        _check_finite("sum", self.sum)
        _check_finite("sumsq", self.sumsq)
        if self.sumsq < 0:
            raise ValueError(f"ArmStats.sumsq must be >= 0, got {self.sumsq!r}")
        covariate = (self.sum_x, self.sum_x2, self.sum_xy)
        present = [c is not None for c in covariate]
        if any(present) and not all(present):
            raise ValueError(
                "ArmStats covariate sums must be all set or all None, got "
                f"sum_x={self.sum_x!r}, sum_x2={self.sum_x2!r}, sum_xy={self.sum_xy!r}"
            )
        for name, value in zip(("sum_x", "sum_x2", "sum_xy"), covariate, strict=True):
            if value is not None:
                _check_finite(name, value)
        if self.n == 0 and (self.sum != 0 or self.sumsq != 0):
            raise ValueError(
                f"ArmStats with n=0 must have sum=0 and sumsq=0, got {self.sum!r}, {self.sumsq!r}"
            )

    # --- construction ------------------------------------------------------------------
    @classmethod
    def from_values(cls, y: Iterable[float], x: Iterable[float] | None = None) -> ArmStats:
        """Summarise raw outcomes ``y`` (and the covariate ``x``, paired with ``y``)."""
        ys = [float(v) for v in y]
        if x is None:
            return cls(len(ys), math.fsum(ys), math.fsum(v * v for v in ys))
        xs = [float(v) for v in x]
        if len(xs) != len(ys):
            raise ValueError(f"ArmStats.from_values: len(x)={len(xs)} != len(y)={len(ys)}")
        return cls(
            len(ys),
            math.fsum(ys),
            math.fsum(v * v for v in ys),
            math.fsum(xs),
            math.fsum(v * v for v in xs),
            math.fsum(a * b for a, b in zip(xs, ys, strict=True)),
        )

    @property
    def has_covariate(self) -> bool:
        """Whether the CUPED covariate sums are present."""
        return self.sum_x is not None

    def __add__(self, other: ArmStats) -> ArmStats:
        if not isinstance(other, ArmStats):
            return NotImplemented
        if self.n == 0:
            return other
        if other.n == 0:
            return self
        if self.has_covariate != other.has_covariate:
            raise ValueError(
                "cannot add ArmStats with covariate sums to ArmStats without them "
                f"(has_covariate={self.has_covariate} + {other.has_covariate})"
            )
        if self.has_covariate:
            assert self.sum_x is not None and self.sum_x2 is not None
            assert self.sum_xy is not None and other.sum_x is not None
            assert other.sum_x2 is not None and other.sum_xy is not None
            return ArmStats(
                self.n + other.n,
                self.sum + other.sum,
                self.sumsq + other.sumsq,
                self.sum_x + other.sum_x,
                self.sum_x2 + other.sum_x2,
                self.sum_xy + other.sum_xy,
            )
        return ArmStats(self.n + other.n, self.sum + other.sum, self.sumsq + other.sumsq)

    # --- moments -----------------------------------------------------------------------
    @property
    def mean(self) -> float:
        """Sample mean of ``y``; raises `InsufficientDataError` when ``n == 0``."""
        if self.n < 1:
            raise InsufficientDataError("ArmStats.mean needs n >= 1, got n=0")
        return self.sum / self.n

    @property
    def variance(self) -> float:
        """Unbiased sample variance of ``y`` (denominator ``n - 1``); needs ``n >= 2``.

        Clamped at 0: ``Σy² - (Σy)²/n`` can come out a few ulps negative for constant data.
        """
        if self.n < 2:
            raise InsufficientDataError(f"ArmStats.variance needs n >= 2, got n={self.n}")
        return max(0.0, (self.sumsq - self.sum * self.sum / self.n) / (self.n - 1))

    @property
    def mean_variance(self) -> float:
        """Variance of the sample mean, ``s² / n``."""
        return self.variance / self.n

    def covariate_moments(self) -> tuple[float, float, float]:
        """Return ``(mean_x, S_xx, S_xy)``: the covariate mean and the centred sums of squares
        and cross-products, ``Σ(x-x̄)²`` and ``Σ(x-x̄)(y-ȳ)``."""
        if self.sum_x is None or self.sum_x2 is None or self.sum_xy is None:
            raise ValueError("ArmStats has no covariate sums (sum_x, sum_x2, sum_xy are None)")
        if self.n < 1:
            raise InsufficientDataError("ArmStats.covariate_moments needs n >= 1, got n=0")
        mean_x = self.sum_x / self.n
        s_xx = max(0.0, self.sum_x2 - self.sum_x * self.sum_x / self.n)
        s_xy = self.sum_xy - self.sum_x * self.sum / self.n
        return mean_x, s_xx, s_xy


@dataclass(frozen=True, slots=True)
class TenantArms:
    """One tenant's control and treatment arms for one A/B test."""

    tenant_id: str
    control: ArmStats
    treatment: ArmStats

    def __post_init__(self) -> None:
        if not isinstance(self.tenant_id, str) or not self.tenant_id:
            raise ValueError(f"TenantArms.tenant_id must be a non-empty str, got {self.tenant_id!r}")

    def __add__(self, other: TenantArms) -> TenantArms:
        """Accumulate another report (another round) of the same tenant."""
        if not isinstance(other, TenantArms):
            return NotImplemented
        if other.tenant_id != self.tenant_id:
            raise ValueError(f"cannot add TenantArms of tenant {other.tenant_id!r} to {self.tenant_id!r}")
        return TenantArms(self.tenant_id, self.control + other.control, self.treatment + other.treatment)
