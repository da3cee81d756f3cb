"""Privacy of federated rounds: the DP and SecAgg+ settings, and the server-side noise.

Tenant-level DP as in DP-FedAvg (McMahan et al. 2018, arXiv:1710.06963): every node's
update ``Δ_i = T_i − T_global`` (the tensors it sends: B only in frozen-a) is clipped to
L2 norm ``C``; Gaussian noise of standard deviation ``z·C`` is added to the *sum* of the
clipped updates, and the new global is ``T_global + (Σ clip(Δ_i) + N(0, z²C²)) / m``.
Nodes weigh equally under DP (a weight ``n_i`` would multiply the sensitivity by
``max n_i``).

* ``dp=server``: the coordinator clips each update and adds the noise (it sees updates);
* ``dp=client``: each node clips and adds the noise itself, so the coordinator never
  sees an un-noised update. Without SecAgg+ the coordinator sees every node's update, so
  each adds the full ``N(0, z²C²)`` (every release is a Gaussian mechanism at ``z``, as
  Flower's ``LocalDpMod``); under SecAgg+ it sees only the sum, so each adds
  ``N(0, z²C²/m)`` with ``m`` the round's ``min-nodes`` (the fewest replies a round
  accepts): the sum of any accepted round carries at least ``z·C`` (distributed DP;
  more nodes than ``m`` only add noise, so the accounting stays conservative);
* with SecAgg+ (``coordinator.rounds.secagg``) the nodes always clip (the coordinator cannot),
  and the noise is added by the nodes (client) or to the unmasked sum (server).

The epsilon spent is kept by :mod:`coordinator.logs.privacy_ledger`, folded from the
coordinator's log; how a round applies these settings is :mod:`coordinator.rounds.strategy`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hermes_fed.errors import ConfigError
from hermes_fed.federation.round_spec import DP_MODES
from hermes_fed.privacy.dp import DPConfig, add_gaussian_noise


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    """The privacy part of a run config (keys ``dp``, ``dp-clip``, ... ``secagg-*``)."""

    dp: str = field(default="off", metadata={"help": "off | server | client: who adds the noise"})
    dp_clip: float = field(default=1.0, metadata={"help": "L2 bound C on each node's update"})
    dp_noise_multiplier: float = field(default=1.0, metadata={
        "help": "z: the noise on the sum of updates has standard deviation z*C"})
    dp_delta: float = field(default=1e-5, metadata={"help": "delta of the reported epsilon"})
    dp_epsilon_budget: float = field(default=0.0, metadata={
        "help": "refuse a round that would take cumulative epsilon past this; 0 = no budget"})
    secagg: bool = field(default=False, metadata={
        "help": "SecAgg+: the coordinator sees only the sum (frozen-a, >= 3 nodes)"})
    secagg_shares: int = field(default=3, metadata={"help": "SecAgg+ shares per secret"})
    secagg_threshold: int = field(default=2, metadata={
        "help": "SecAgg+ reconstruction threshold: fewer live nodes fail the round"})
    secagg_clipping_range: float = field(default=1.0, metadata={
        "help": "SecAgg+ quantises update values in [-range, range]; a node whose update "
                "leaves it refuses to contribute"})
    secagg_quantization_range: int = field(default=2 ** 24, metadata={
        "help": "SecAgg+ integer levels over the clipping range (precision)"})
    secagg_max_weight: float = field(default=1000.0, metadata={
        "help": "largest node weight (num-examples; 1 under DP) SecAgg+ can carry exactly"})
    secagg_timeout: float = field(default=120.0, metadata={
        "help": "seconds each SecAgg+ stage waits for replies; late nodes count as dropped"})

    def __post_init__(self) -> None:
        if self.secagg not in (False, True):  # 0 and 1 compare equal to them
            raise ConfigError(f"run config secagg must be true or false, got {self.secagg!r}")
        if self.dp not in DP_MODES:
            raise ConfigError(f"run config dp must be one of {DP_MODES}, got {self.dp!r}")
        if self.dp_epsilon_budget < 0:
            raise ConfigError(f"run config dp-epsilon-budget must be >= 0, "
                              f"got {self.dp_epsilon_budget!r}")
        try:
            self.dp_config()
        except ValueError as exc:
            raise ConfigError(f"run config: {exc}") from None
        if self.secagg:
            if not 2 <= self.secagg_threshold < self.secagg_shares:
                raise ConfigError("run config secagg-threshold must be >= 2 and below "
                                  f"secagg-shares={self.secagg_shares}, got "
                                  f"{self.secagg_threshold!r}")
            for name in ("secagg_clipping_range", "secagg_max_weight", "secagg_timeout"):
                if not getattr(self, name) > 0:
                    raise ConfigError(f"run config {name.replace('_', '-')} must be > 0, "
                                      f"got {getattr(self, name)!r}")

    @property
    def dp_on(self) -> bool:
        return self.dp != "off"

    def dp_config(self) -> DPConfig:
        return DPConfig(mode=self.dp, clip_norm=self.dp_clip,
                        noise_multiplier=self.dp_noise_multiplier, delta=self.dp_delta,
                        epsilon_budget=self.dp_epsilon_budget or None)

    def check_round_setup(self, mode: str, min_nodes: int) -> None:
        """Refuse combinations that cannot keep their promise, naming the fix."""
        if self.secagg and mode != "frozen-a":
            raise ConfigError(
                f"SecAgg+ needs aggregation mode frozen-a (its aggregate is an exact plain "
                f"sum); mode {mode!r} needs every node's own factors, which secure "
                "aggregation hides: run with --mode frozen-a")
        if self.secagg and min_nodes < 3:
            raise ConfigError(f"SecAgg+ needs >= 3 nodes to hide anyone's update, got "
                              f"min-nodes={min_nodes}")
        if self.dp_on and mode == "exact":
            raise ConfigError("DP needs a linear aggregate (noise on a sum): use mode frozen-a "
                              "or fedavg, not 'exact'")

    def node_noise_std(self, num_nodes: int) -> float:
        """Each node's noise in client mode: ``z·C`` alone, ``z·C/√m`` under SecAgg+."""
        if self.dp != "client":
            return 0.0
        if not self.secagg:  # the coordinator sees this node's update by itself
            return self.dp_noise_multiplier * self.dp_clip
        return self.dp_noise_multiplier * self.dp_clip / math.sqrt(max(num_nodes, 1))

    def node_clips(self) -> bool:
        """Nodes clip in client mode and under SecAgg+ (the coordinator cannot see updates)."""
        return self.dp == "client" or (self.dp_on and bool(self.secagg))

    @staticmethod
    def known_keys() -> frozenset[str]:
        from dataclasses import fields

        return frozenset(f.name.replace("_", "-") for f in fields(PrivacySettings))

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any],
                        env: Mapping[str, str] | None = None) -> PrivacySettings:
        """Like :meth:`coordinator.rounds.config.RoundsConfig.from_run_config`: file, then run config."""
        from coordinator.rounds.config import merged_run_config
        from hermes_fed.federation.settings import coerce_fields

        return cls(**coerce_fields(cls, merged_run_config(run_config, env), "run config"))


def noise_the_mean(tensors: Mapping[str, np.ndarray], keys: Sequence[str], num_nodes: int,
                   settings: PrivacySettings, rng: np.random.Generator | None = None,
                   ) -> dict[str, np.ndarray]:
    """Server-side noise: ``N(0, (z·C)²)`` on the sum is ``N(0, (z·C/m)²)`` on the mean."""
    out = dict(tensors)
    if settings.dp != "server":
        return out
    generator = rng if rng is not None else np.random.default_rng()  # OS entropy
    std = settings.dp_noise_multiplier * settings.dp_clip / num_nodes
    out.update(add_gaussian_noise({k: tensors[k] for k in keys}, std, generator))
    return out


def settings_dict(settings: PrivacySettings) -> dict[str, Any]:
    return asdict(settings)


def render_privacy(round_number: int, privacy: Mapping[str, Any]) -> str:
    """One line per round: DP parameters, epsilon (round, total), SecAgg+ outcome."""
    parts = [f"{round_number:>5}   privacy dp={privacy.get('dp')}"]
    if privacy.get("dp") != "off":
        parts.append(f"C={privacy['clip_norm']:g} z={privacy['noise_multiplier']:g} "
                     f"delta={privacy['delta']:g} epsilon round={privacy['epsilon_round']:.3f} "
                     f"total={privacy['epsilon_total']:.3f}")
    if (secagg := privacy.get("secagg")) and isinstance(secagg, Mapping):
        parts.append(f"secagg+ dropped={len(secagg['dropped'])} "
                     f"quantisation<= {secagg['quantization_bound']:.2e}")
    return " ".join(parts)
