"""Cells: the mergeable sufficient statistics a node may report, and how they travel.

A cell ``name`` travels as metrics ``<name>.n``, ``<name>.sum``, ``<name>.sumsq`` and,
for A/B cells with a CUPED covariate, ``<name>.sum_x``, ``<name>.sum_x2``,
``<name>.sum_xy``. A cell with ``0 < n < k_min`` never leaves the node (its egress guard
drops it and counts it under ``suppressed-cells``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hermes_fed.abtest.arms import ArmStats

AB_CONTROL = "ab.control"
AB_TREATMENT = "ab.treatment"
AB_PAIRED = "ab.paired"
AB_VERSION = "ab.version"
COVARIATE_SUFFIXES: tuple[str, ...] = ("sum_x", "sum_x2", "sum_xy")


@dataclass(frozen=True, slots=True)
class Cell:
    """Sufficient statistics of one cell: ``n``, ``sum``, ``sum of squares`` (mergeable),
    and optionally the CUPED covariate sums ``sum_x``, ``sum_x2``, ``sum_xy``."""

    name: str
    n: int
    total: float
    total_sq: float
    covariates: tuple[float, float, float] | None = None

    def __add__(self, other: Cell) -> Cell:
        if other.name != self.name:
            raise ValueError(f"cannot add cell {other.name!r} to cell {self.name!r}")
        covariates = None
        if self.covariates is not None and other.covariates is not None:
            a, b = self.covariates, other.covariates
            covariates = (a[0] + b[0], a[1] + b[1], a[2] + b[2])
        return Cell(self.name, self.n + other.n, self.total + other.total,
                    self.total_sq + other.total_sq, covariates)

    def metrics(self) -> dict[str, float]:
        """The metrics this cell travels as (the egress guard decides whether it may)."""
        out = {f"{self.name}.n": float(self.n), f"{self.name}.sum": self.total,
               f"{self.name}.sumsq": self.total_sq}
        if self.covariates is not None:
            out.update({f"{self.name}.{s}": v
                        for s, v in zip(COVARIATE_SUFFIXES, self.covariates, strict=True)})
        return out


def arm_from_metrics(metrics: Mapping[str, float], cell: str) -> ArmStats | None:
    """The :class:`ArmStats` of ``cell`` in a reply's metrics; None when it was suppressed."""
    if f"{cell}.n" not in metrics:
        return None
    base = (int(metrics[f"{cell}.n"]), float(metrics[f"{cell}.sum"]),
            float(metrics[f"{cell}.sumsq"]))
    cov = [metrics.get(f"{cell}.{k}") for k in COVARIATE_SUFFIXES]
    if cov[0] is not None and cov[1] is not None and cov[2] is not None:
        return ArmStats(*base, float(cov[0]), float(cov[1]), float(cov[2]))
    return ArmStats(*base)


def cell_of(name: str, stats: ArmStats) -> Cell:
    """The cell of ``stats``, with its covariate sums when it has a covariate."""
    covariates = None
    if stats.sum_x is not None and stats.sum_x2 is not None and stats.sum_xy is not None:
        covariates = (float(stats.sum_x), float(stats.sum_x2), float(stats.sum_xy))
    return Cell(name, stats.n, float(stats.sum), float(stats.sumsq), covariates)
