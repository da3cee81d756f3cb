"""The autopilot's settings: the ``[autopilot]`` table of the coordinator's TOML file.

Example ``autopilot.toml`` (every key optional; the defaults are the fields' below)::

    [autopilot]
    cadence_seconds = 60         # one step of the wheel every minute
    min_nodes = 2                # train when at least 2 nodes' triggers say train
    stale_days = 14              # ... or when the last training is this old
    rounds_per_cycle = 1
    continue_inconclusive = true # after an inconclusive A/B, train on from its candidate
    canary_share = 0.01          # production serves the rest
    ab_share = 0.09
    base_model = "/models/base"  # what the rounds train on (the nodes have the same)
    webhook_url = "https://ops.example/hooks/hermes"   # POSTed on promote and rollback

There is no simulator setting here: time comes from :mod:`hermes_fed.clock`.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hermes_fed.abtest import QualityGuardConfig
from hermes_fed.errors import ConfigError
from hermes_fed.federation.settings import AGGREGATION_MODES, coerce_fields
from hermes_fed.registry.promotion import PromotionConfig

TABLE = "autopilot"
AUTOPILOT_ROUND_KEYS = ("coordinator-dir", "base-model", "rounds", "mode", "parent-version",
                        "ab-looks", "ab-only")


@dataclass(frozen=True, slots=True)
class AutopilotConfig:
    """When and how the coordinator turns the wheel by itself (DESIGN.md §11)."""

    cadence_seconds: float = field(default=60.0, metadata={
        "help": "seconds between two steps of the autopilot loop"})
    min_nodes: int = field(default=1, metadata={
        "help": "nodes whose query.trigger must say train before a cycle trains"})
    stale_days: float = field(default=14.0, metadata={
        "help": "train anyway (with any node that answers) when the last training is older"})
    rounds_per_cycle: int = field(default=1, metadata={"help": "federated rounds per cycle"})
    continue_inconclusive: bool = field(default=True, metadata={
        "help": "after a candidate's online A/B ends inconclusive (not harmful, not worse, "
                "not futile), the next cycle trains on from it instead of from production; "
                "what is served is still decided against production"})
    canary_share: float = field(default=0.01, metadata={
        "help": "share of each node's users on the candidate during canary"})
    ab_share: float = field(default=0.09, metadata={
        "help": "share of users on the candidate during the online A/B (its traffic split)"})
    canary_days: float = field(default=1.0, metadata={
        "help": "days on canary without a guardrail breach before the online A/B"})
    canary_max_days: float = field(default=7.0, metadata={
        "help": "a canary that saw fewer than canary_min_samples candidate sessions goes on "
                "to the A/B after this many days (its sequential test then guards)"})
    canary_alpha: float = field(default=0.05, metadata={
        "help": "canary guardrail: one-sided level at which a tenant counts as harmed"})
    canary_max_drop: float = field(default=0.05, metadata={
        "help": "canary guardrail: pooled relative drop of the candidate arm that breaches"})
    canary_min_samples: int = field(default=20, metadata={
        "help": "canary guardrail: sessions per arm (pooled) before the drop is judged"})
    ab_min_samples: int = field(default=1000, metadata={
        "help": "online A/B: sessions per arm over all tenants before a decision"})
    ab_duration_days: int = field(default=14, metadata={
        "help": "online A/B: planned length; inconclusive at its end -> ROLLBACK"})
    look_interval_seconds: float = field(default=3600.0, metadata={
        "help": "seconds between two looks at a canary or an online A/B"})
    quality_interval_seconds: float = field(default=86400.0, metadata={
        "help": "seconds between two looks at production quality (the feedback-loop guard)"})
    quality_window: int = field(default=5, metadata={
        "help": "feedback-loop guard: latest looks in the slope fit"})
    quality_max_drop: float = field(default=0.05, metadata={
        "help": "degradation trigger: relative drop of production quality that rolls back"})
    failed_retry_seconds: float = field(default=3600.0, metadata={
        "help": "seconds after a failed cycle (training failed) before the next may train"})
    deploy_retry_seconds: float = field(default=60.0, metadata={
        "help": "seconds before a deploy some node did not acknowledge is sent again"})
    node_timeout_seconds: float = field(default=600.0, metadata={
        "help": "seconds to wait for the nodes' replies in one exchange"})
    base_model: str = field(default="", metadata={
        "help": "base-model dir the rounds train on (needed to train over Flower)"})
    mode: str = field(default="frozen-a", metadata={"help": "the rounds' aggregation mode"})
    round_config: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "the [autopilot.round_config] table: run-config keys of the cycle's rounds "
                "(local-steps = 50, rank = 8, min-nodes = 2, dp = \"server\", ...), "
                "checked as `round run` checks them"})
    webhook_url: str = field(default="", metadata={
        "help": "POST a JSON note here on every promotion and rollback; empty = none"})

    def __post_init__(self) -> None:
        for name in ("min_nodes", "rounds_per_cycle", "quality_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"[autopilot] {name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.continue_inconclusive, bool):
            raise ConfigError("[autopilot] continue_inconclusive must be true or false, got "
                              f"{self.continue_inconclusive!r}")
        for name in ("canary_min_samples", "ab_min_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"[autopilot] {name} must be an integer >= 0, got {value!r}")
        if isinstance(self.ab_duration_days, bool) or not isinstance(self.ab_duration_days, int) \
                or self.ab_duration_days < 1:
            raise ConfigError("[autopilot] ab_duration_days must be an integer >= 1, got "
                              f"{self.ab_duration_days!r}")
        for name in ("cadence_seconds", "look_interval_seconds", "quality_interval_seconds",
                     "deploy_retry_seconds", "node_timeout_seconds", "stale_days",
                     "failed_retry_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"[autopilot] {name} must be a number > 0, got {value!r}")
        if not (isinstance(self.canary_days, int | float) and math.isfinite(self.canary_days)
                and self.canary_days >= 0):
            raise ConfigError(f"[autopilot] canary_days must be >= 0, got {self.canary_days!r}")
        if not (isinstance(self.canary_max_days, int | float)
                and self.canary_max_days >= self.canary_days):
            raise ConfigError(f"[autopilot] canary_max_days must be >= canary_days "
                              f"({self.canary_days!r}), got {self.canary_max_days!r}")
        for name in ("canary_alpha", "canary_max_drop", "quality_max_drop"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 < value < 1.0):
                raise ConfigError(f"[autopilot] {name} must be in (0, 1), got {value!r}")
        try:
            self.promotion()
        except ConfigError as exc:
            raise ConfigError(f"[autopilot] canary_share={self.canary_share!r}, "
                              f"ab_share={self.ab_share!r}: {exc}") from None
        if self.mode not in AGGREGATION_MODES:
            raise ConfigError(f"[autopilot] mode must be one of {AGGREGATION_MODES}, "
                              f"got {self.mode!r}")
        self._check_round_config()
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ConfigError(f"[autopilot] webhook_url must be an http(s) URL, "
                              f"got {self.webhook_url!r}")

    def _check_round_config(self) -> None:
        from coordinator.rounds.config import RoundsConfig, refuse_unknown_keys
        from coordinator.rounds.dp import PrivacySettings

        if not isinstance(self.round_config, dict):
            raise ConfigError("[autopilot.round_config] must be a table, got "
                              f"{type(self.round_config).__name__}")
        own = sorted(set(self.round_config) & set(AUTOPILOT_ROUND_KEYS))
        if own:
            raise ConfigError(f"[autopilot.round_config] sets {', '.join(own)}, which the "
                              "autopilot sets itself (base_model, mode, rounds_per_cycle)")
        refuse_unknown_keys(self.round_config,
                            RoundsConfig.known_keys() | PrivacySettings.known_keys())
        run_config = {"coordinator-dir": "check", "base-model": "check", **self.round_config}
        RoundsConfig.from_run_config(run_config, env={})
        PrivacySettings.from_run_config(run_config, env={})

    def promotion(self) -> PromotionConfig:
        """The promotion stages' traffic fractions (the plan's shares are the same)."""
        return PromotionConfig(canary_fraction=self.canary_share, ab_fraction=self.ab_share)

    def quality_guard(self) -> QualityGuardConfig:
        return QualityGuardConfig(window=self.quality_window, max_drop=self.quality_max_drop)

    @classmethod
    def from_mapping(cls, table: Any, where: str = "[autopilot]") -> AutopilotConfig:
        """The dataclass of a parsed ``[autopilot]`` table; unknown keys are refused."""
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table, got {type(table).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k in table if k.replace("-", "_") not in known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**coerce_fields(cls, table, where))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None
                ) -> AutopilotConfig:
    """The ``[autopilot]`` table of ``path`` (defaults when ``path`` is None), then
    ``overrides`` (the command line's flags) on top."""
    table: dict[str, Any] = {}
    if path is not None:
        try:
            with Path(path).open("rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read autopilot config {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"autopilot config {path} is not valid TOML: {exc}") from None
        raw = doc.get(TABLE, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: [autopilot] must be a table, got {type(raw).__name__}")
        table.update(raw)
    table.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return AutopilotConfig.from_mapping(table, f"{path or 'flags'} [autopilot]")
