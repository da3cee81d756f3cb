"""The run config of the coordinator's rounds: :class:`RoundsConfig`.

A run's settings come from two places, merged: the coordinator's settings file (named by
the SuperLink's environment, ``$HERMES_FED_COORDINATOR_CONFIG``) and ``flwr run -c``.
Flower refuses ``-c`` keys that ``[tool.flwr.app.config]`` does not declare, so only the
declared ones (``rounds``, ``mode``) go that way; ``hermes-fed round run`` writes the rest
to the file first. Keys are the fields' wire form (``min-nodes``, ``local-steps``, ...):
the training settings of :class:`hermes_fed.federation.RoundSettings`, the coordinator's
own below, and the privacy settings of :class:`coordinator.rounds.dp.PrivacySettings`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hermes_fed.errors import ConfigError
from hermes_fed.federation.round_spec import RoundSpec, UpdateShaping
from hermes_fed.federation.settings import (
    AGGREGATION_MODES,
    RoundSettings,
    coerce_fields,
    wire_key,
)

CONFIG_ENV = "HERMES_FED_COORDINATOR_CONFIG"


def refuse_unknown_keys(merged: Mapping[str, Any], known: frozenset[str]) -> None:
    """A key no settings class reads is a typo or a setting of another version: refuse it
    (ignored, it would leave the round running on a default the operator did not ask for)."""
    unknown = sorted(k for k in merged if k not in known)
    if unknown:
        raise ConfigError(f"unknown run config key(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(sorted(known))}")


def merged_run_config(run_config: Mapping[str, Any],
                      env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The coordinator's settings file (``$HERMES_FED_COORDINATOR_CONFIG``) under the run config."""
    environ = os.environ if env is None else env
    merged: dict[str, Any] = {}
    if path := environ.get(CONFIG_ENV):
        try:
            merged.update(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{CONFIG_ENV}={path} is not a readable JSON file: "
                              f"{exc}") from None
    merged.update(run_config)
    return merged


@dataclass(frozen=True, slots=True)
class RoundsConfig:
    """What one ``round run`` asks of the coordinator (beside the training settings)."""

    coordinator_dir: str = field(metadata={"help": "registry, coordinator log and reports"})
    base_model: str = field(metadata={"help": "base-model dir (the nodes use the same model)"})
    settings: RoundSettings = field(default_factory=RoundSettings, metadata={
        "help": "how nodes train (hermes_fed.federation.RoundSettings)"})
    rounds: int = field(default=1, metadata={"help": "federated rounds in this run"})
    mode: str = field(default="frozen-a", metadata={
        "help": "aggregation: fedavg (average A and B apart) | exact (mean of B·A, "
                "re-compressed by SVD) | frozen-a (A fixed from a shared seed, B averaged)"})
    min_nodes: int = field(default=1, metadata={"help": "nodes to wait for and replies needed"})
    clip_norm: float = field(default=0.0, metadata={
        "help": "robustness: bound each node's update norm at this; 0 = no bound"})
    round_timeout: float = field(default=600.0, metadata={"help": "seconds per exchange"})
    node_wait: float = field(default=120.0, metadata={"help": "seconds to wait for min-nodes"})
    poll_interval: float = field(default=0.2, metadata={"help": "seconds between reply pulls"})
    evaluate: int = field(default=1, metadata={"help": "1: evaluate the new adapter on "
                                                       "every node's held-out data"})
    ab_looks: int = field(default=1, metadata={"help": "1: look at open A/B tests after a round"})
    ab_only: int = field(default=0, metadata={"help": "1: no training, one A/B look per round"})
    parent_version: str = field(default="", metadata={
        "help": "start from this registry version (the autopilot's production); default: "
                "the latest compatible one"})

    def __post_init__(self) -> None:
        if self.mode not in AGGREGATION_MODES:
            raise ConfigError(f"mode must be one of {AGGREGATION_MODES}, got {self.mode!r}")
        for name in ("rounds", "min_nodes"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{wire_key(name)} must be >= 1, got {getattr(self, name)!r}")
        for name in ("round_timeout", "node_wait", "poll_interval"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{wire_key(name)} must be > 0, got {value!r}")
        if not (math.isfinite(self.clip_norm) and self.clip_norm >= 0):
            raise ConfigError(f"clip-norm must be >= 0, got {self.clip_norm!r}")
        for name in ("evaluate", "ab_looks", "ab_only"):
            if getattr(self, name) not in (0, 1):
                raise ConfigError(f"{wire_key(name)} must be 0 or 1, got {getattr(self, name)!r}")
        if not self.coordinator_dir or not self.base_model:
            raise ConfigError("coordinator-dir and base-model are required, got "
                              f"{self.coordinator_dir!r} and {self.base_model!r}")

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any],
                        env: Mapping[str, str] | None = None) -> RoundsConfig:
        """The run config over the coordinator's settings file (module docstring)."""
        merged = merged_run_config(run_config, env)
        values = coerce_fields(cls, merged, "run config")
        values.pop("settings", None)
        return cls(settings=RoundSettings.from_mapping(merged, "run config"), **values)

    @staticmethod
    def known_keys() -> frozenset[str]:
        """The run-config keys of this class and of :class:`RoundSettings`."""
        own = {wire_key(f.name) for f in fields(RoundsConfig) if f.name != "settings"}
        return frozenset(own | {wire_key(f.name) for f in fields(RoundSettings)})

    def to_run_config(self) -> dict[str, str | int | float]:
        """The flat wire form (inverse of :meth:`from_run_config`)."""
        out: dict[str, str | int | float] = {}
        for f in fields(self):
            if f.name != "settings":
                out[wire_key(f.name)] = getattr(self, f.name)
        out.update(self.settings.to_mapping())
        return out

    def spec(self, round_number: int, parent: str,
             shaping: UpdateShaping | None = None) -> RoundSpec:
        """The ``config`` of this run's ``train`` / ``evaluate`` messages."""
        return RoundSpec(round=round_number, mode=self.mode, parent_version=parent,
                         settings=self.settings, shaping=shaping or UpdateShaping())

    def shape_lineage(self) -> dict[str, Any]:
        """What every version of this run shares: the adapter's shape and its base."""
        s = self.settings
        return {"r": s.rank, "alpha": s.alpha, "frozen_a": self.mode == "frozen-a",
                "frozen_a_seed": s.frozen_a_seed, "base_model": self.base_model,
                "max_length": s.max_length}
