"""Privacy of federated rounds: DP settings, the accountant kept in the log, DP aggregation.

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

The accountant (:class:`hermes_fed.privacy.dp.RdpAccountant`, sampling rate 1: every
node takes part) is rebuilt from the coordinator's log at the start of every run: each
``RoundCompleted`` report carries the DP parameters of its round (invariant P1: the
privacy spent is a fold over the log, so it survives ``round run`` invocations). A round
that would pass ``dp-epsilon-budget`` is refused before anything is sent (invariant P2:
nothing is published for it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from hermes_fed.errors import ConfigError
from hermes_fed.privacy.dp import DPConfig, RdpAccountant, add_gaussian_noise, clip_update

DP_MODES = ("off", "server", "client")
ROUND_COMPLETED = "RoundCompleted"


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
    secagg: int = field(default=0, metadata={"help": "1: SecAgg+ (the coordinator sees sums)"})
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
        if self.dp not in DP_MODES:
            raise ConfigError(f"run config dp must be one of {DP_MODES}, got {self.dp!r}")
        if self.secagg not in (0, 1):
            raise ConfigError(f"run config secagg must be 0 or 1, got {self.secagg!r}")
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

    def message_config(self, num_nodes: int) -> dict[str, str | float | int]:
        """What a node needs to shape its update (added to the ``train`` config)."""
        return {"dp-mode": self.dp, "dp-clip": float(self.dp_clip) if self.node_clips() else 0.0,
                "dp-noise-std": float(self.node_noise_std(num_nodes)),
                "secagg-clipping-range": float(self.secagg_clipping_range)}

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any],
                        env: Mapping[str, str] | None = None) -> PrivacySettings:
        """Like :meth:`coordinator.rounds.loop.RoundsConfig.from_run_config`: file, then run config."""
        from coordinator.rounds.loop import merged_run_config

        merged = merged_run_config(run_config, env)
        kinds = {f.name: {"int": int, "float": float, "str": str}[str(f.type)]
                 for f in fields(cls)}
        values = {}
        for key, value in merged.items():
            name = key.replace("-", "_")
            if name in kinds:
                try:
                    values[name] = kinds[name](value)
                except (TypeError, ValueError):
                    raise ConfigError(f"run config {key} must be {kinds[name].__name__}, "
                                      f"got {value!r}") from None
        return cls(**values)


# --- the accountant, folded from the log --------------------------------------------
def round_dp(report: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The DP parameters a completed round's report carries, or None (no DP)."""
    privacy = report.get("privacy") or {}
    if privacy.get("dp") in ("server", "client"):
        return privacy
    return None


def accountant_from_log(store: Any) -> RdpAccountant:
    """Replay every DP round of the coordinator's log into a fresh accountant (P1)."""
    accountant = RdpAccountant()
    for event in store.read():
        if event.type != ROUND_COMPLETED:
            continue
        dp = round_dp(event.data.get("report") or {})
        if dp is not None:
            accountant.step(float(dp["noise_multiplier"]), float(dp.get("sampling_rate", 1.0)))
    return accountant


def single_round_epsilon(settings: PrivacySettings) -> float:
    """Epsilon of one round alone at ``dp-delta`` (what a round adds, before composition)."""
    return RdpAccountant().epsilon_after(settings.dp_noise_multiplier, 1.0, settings.dp_delta)


@dataclass(frozen=True, slots=True)
class PrivacyLedger:
    """The run's view of privacy spent: the accountant plus the settings it charges."""

    settings: PrivacySettings
    accountant: RdpAccountant

    def refuse_if_exhausted(self, round_number: int) -> None:
        """Raise :class:`PrivacyBudgetExhausted` before a round that would pass the budget."""
        if not self.settings.dp_on or not self.settings.dp_epsilon_budget:
            return
        cfg = self.settings.dp_config()
        after = self.accountant.epsilon_after(cfg.noise_multiplier, 1.0, cfg.delta)
        if after > self.settings.dp_epsilon_budget:
            from hermes_fed.errors import PrivacyBudgetExhausted

            raise PrivacyBudgetExhausted(
                f"privacy budget exhausted: round {round_number} would bring epsilon to "
                f"{after:.3f} > budget {self.settings.dp_epsilon_budget:g} (delta="
                f"{cfg.delta:g}, {self.accountant.rounds} DP rounds already in the "
                "coordinator's log); nothing was sent or published. Raise "
                "--epsilon-budget or --noise-multiplier to continue")

    def charge(self) -> dict[str, Any]:
        """Record one released round; returns its privacy report (None-free JSON)."""
        s = self.settings
        if not s.dp_on:
            return {"dp": "off", "secagg": bool(s.secagg)}
        total = self.accountant.charge(s.dp_config())
        return {"dp": s.dp, "clip_norm": s.dp_clip, "noise_multiplier": s.dp_noise_multiplier,
                "noise_std_on_sum": s.dp_noise_multiplier * s.dp_clip, "delta": s.dp_delta,
                "sampling_rate": 1.0, "epsilon_round": single_round_epsilon(s),
                "epsilon_total": total, "dp_rounds_total": self.accountant.rounds,
                "epsilon_budget": s.dp_epsilon_budget or None, "secagg": bool(s.secagg)}


# --- DP aggregation (plain rounds: the coordinator sees each update) ------------------
@dataclass(frozen=True, slots=True)
class PrivatizedNode:
    """What DP did to one node's update (norms only)."""

    node_id: str
    norm: float
    clipped_norm: float


def clip_to_reference(tensors: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                      clip: float) -> tuple[dict[str, np.ndarray], float, float]:
    """``reference + clip(T − reference)``; returns it, ``‖T − ref‖`` and the clipped norm."""
    delta = {k: np.asarray(v, dtype=np.float64) - np.asarray(reference[k], dtype=np.float64)
             for k, v in tensors.items()}
    clipped, norm = clip_update(delta, clip)
    clipped_norm = math.sqrt(sum(float(np.sum(np.square(v))) for v in clipped.values()))
    out = {k: (np.asarray(reference[k], dtype=np.float64) + v).astype(np.asarray(
        tensors[k]).dtype) for k, v in clipped.items()}
    return out, norm, clipped_norm


def privatize_updates(updates: Sequence[Any], reference: Mapping[str, np.ndarray],
                      settings: PrivacySettings) -> tuple[list[Any], list[PrivatizedNode]]:
    """Updates ready for an equal-weight mean: clipped here (server) or by the node (client).

    Each becomes a ``ClientUpdate`` of weight 1 (DP weighs nodes equally); in client mode
    the tensors are the node's own (already clipped and noised) and only measured.
    """
    from hermes_fed.aggregation.records import ClientUpdate

    out, seen = [], []
    for u in updates:
        if settings.dp == "server":
            tensors, norm, clipped = clip_to_reference(u.tensors, reference, settings.dp_clip)
        else:
            tensors = dict(u.tensors)
            _, norm, clipped = clip_to_reference(u.tensors, reference, math.inf)
        out.append(ClientUpdate(node_id=u.node_id, num_examples=1, tensors=tensors))
        seen.append(PrivatizedNode(u.node_id, norm, clipped))
    return out, seen


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


def node_report(nodes: Sequence[PrivatizedNode]) -> dict[str, dict[str, float]]:
    return {n.node_id: {"update_norm": n.norm, "clipped_norm": n.clipped_norm} for n in nodes}


def settings_dict(settings: PrivacySettings) -> dict[str, Any]:
    return asdict(settings)
