"""Validated configuration of the quality pipeline (TOML section ``[quality]``).

Every weight and threshold of DESIGN.md §5 lives here with its default documented in the
field's ``help``. Sub-sections map to TOML tables: ``[quality.implicit]``,
``[quality.combine]``, ``[quality.tiers]``, ``[quality.selection]``, ``[quality.trigger]``,
``[quality.judge_http]`` and ``[quality.curated]``.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hermes_fed.errors import ConfigError


def _check_finite(owner: object, names: tuple[str, ...], *, low: float | None = None,
                  high: float | None = None) -> None:
    for name in names:
        value = getattr(owner, name)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
            value)
        if ok and low is not None and value < low:
            ok = False
        if ok and high is not None and value > high:
            ok = False
        if not ok:
            bounds = f" in [{low}, {high}]" if low is not None or high is not None else ""
            raise ConfigError(
                f"{type(owner).__name__}.{name} must be a finite number{bounds}, got {value!r}"
            )


def _check_int(owner: object, names: tuple[str, ...], *, low: int) -> None:
    for name in names:
        value = getattr(owner, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(
                f"{type(owner).__name__}.{name} must be an integer >= {low}, got {value!r}"
            )


@dataclass(frozen=True, slots=True)
class ImplicitWeights:
    """Weights of the implicit-feedback score (DESIGN.md §5)."""

    base: float = field(default=0.5, metadata={"help": "Score before any signal."})
    accepted: float = field(default=0.3, metadata={
        "help": "Added when the output was accepted, subtracted when it was not."})
    no_retry: float = field(default=0.1, metadata={"help": "Bonus when no retry was asked."})
    many_retries: float = field(default=-0.2, metadata={
        "help": "Added (a penalty) when retries >= many_retries_at."})
    many_retries_at: int = field(default=3, metadata={
        "help": "Retry count from which the many_retries penalty applies."})
    edit: float = field(default=-0.3, metadata={
        "help": "Multiplies the edit ratio (the largest of the trajectory's edits)."})
    continued: float = field(default=0.1, metadata={
        "help": "Added when the user continued the session after this output."})
    error: float = field(default=-0.4, metadata={
        "help": "Added once when at least one error was reported (not per report)."})

    def __post_init__(self) -> None:
        _check_finite(self, ("base", "accepted", "no_retry", "many_retries", "edit",
                             "continued", "error"), low=-1.0, high=1.0)
        _check_int(self, ("many_retries_at",), low=1)


@dataclass(frozen=True, slots=True)
class CombineWeights:
    """How the implicit score, judge scores and a human label fuse into ``combined_score``."""

    implicit: float = field(default=0.6, metadata={
        "help": "Weight of the implicit-feedback score."})
    judges: float = field(default=0.4, metadata={
        "help": "Weight of the mean judge score (judges score in [0, 1])."})
    human_wins: bool = field(default=True, metadata={
        "help": "A human label, when present, is the combined score (the latest label)."})
    judges_never_lift_rejected: bool = field(default=True, metadata={
        "help": "When users retried, edited or reported an error, the combined score is at "
                "most the implicit score: judges may lower it, never raise it (an answer users "
                "rejected is not SFT data because a judge liked its form)."})
    tool_error: float = field(default=0.2, metadata={
        "help": "Subtracted from the combined score (not from a human label) when the "
                "trajectory's last tool result reports an error: the task did not succeed, "
                "even when the answer reports the failure well."})

    def __post_init__(self) -> None:
        _check_finite(self, ("implicit", "judges"), low=0.0)
        _check_finite(self, ("tool_error",), low=0.0, high=2.0)
        if not isinstance(self.judges_never_lift_rejected, bool):
            raise ConfigError(f"CombineWeights.judges_never_lift_rejected must be a bool, got "
                              f"{self.judges_never_lift_rejected!r}")
        if self.implicit == 0 and self.judges == 0:
            raise ConfigError(
                f"CombineWeights: implicit and judges cannot both be 0, got "
                f"implicit={self.implicit!r} judges={self.judges!r}"
            )
        if not isinstance(self.human_wins, bool):
            raise ConfigError(f"CombineWeights.human_wins must be a bool, got "
                              f"{self.human_wins!r}")


@dataclass(frozen=True, slots=True)
class CuratedConfig:
    """Imported trajectories a deployer vouches for (``node import --curated``)."""

    prior: float = field(default=0.7, metadata={
        "help": "Implicit score of a curated trajectory no user has reacted to (imports carry "
                "no feedback; without --curated they score 0.30, bronze, never selected). "
                "0.7 is gold (weight 2): below an answer users accepted (0.9, platinum)."})

    def __post_init__(self) -> None:
        _check_finite(self, ("prior",), low=-1.0, high=1.0)


@dataclass(frozen=True, slots=True)
class TierConfig:
    """Half-open tier boundaries over [-1, 1] and the training weight of each tier."""

    platinum_from: float = field(default=0.85, metadata={
        "help": "platinum is [platinum_from, 1]."})
    gold_from: float = field(default=0.60, metadata={
        "help": "gold is [gold_from, platinum_from)."})
    silver_from: float = field(default=0.35, metadata={
        "help": "silver is [silver_from, gold_from); bronze is [-1, silver_from). Above "
                "0.30, the implicit score of an answer the user said nothing about "
                "(0.5 - 0.3 not accepted + 0.1 no retry): silence is not evidence of quality."})
    platinum_weight: float = field(default=5.0, metadata={"help": "Training weight, platinum."})
    gold_weight: float = field(default=2.0, metadata={"help": "Training weight, gold."})
    silver_weight: float = field(default=1.0, metadata={"help": "Training weight, silver."})
    bronze_weight: float = field(default=0.3, metadata={"help": "Training weight, bronze."})

    def __post_init__(self) -> None:
        _check_finite(self, ("platinum_from", "gold_from", "silver_from"), low=-1.0, high=1.0)
        if not -1.0 < self.silver_from < self.gold_from < self.platinum_from <= 1.0:
            raise ConfigError(
                "TierConfig boundaries must satisfy -1 < silver_from < gold_from < "
                f"platinum_from <= 1, got silver_from={self.silver_from!r} "
                f"gold_from={self.gold_from!r} platinum_from={self.platinum_from!r}"
            )
        _check_finite(self, ("platinum_weight", "gold_weight", "silver_weight",
                             "bronze_weight"), low=0.0)


@dataclass(frozen=True, slots=True)
class SelectionConfig:
    """Per-tier budgets ``max(min, N * fraction)`` and near-duplicate removal."""

    platinum_min: int = field(default=50, metadata={"help": "Platinum budget floor."})
    platinum_fraction: float = field(default=1 / 25, metadata={"help": "Platinum: N/25."})
    gold_min: int = field(default=200, metadata={"help": "Gold budget floor."})
    gold_fraction: float = field(default=1 / 5, metadata={"help": "Gold: N/5."})
    silver_min: int = field(default=500, metadata={"help": "Silver budget floor."})
    silver_fraction: float = field(default=1 / 2, metadata={"help": "Silver: N/2."})
    bronze_min: int = field(default=0, metadata={
        "help": "Bronze budget floor; 0: bronze (answers users rejected, retried, edited or "
                "left without a word) is never SFT data (DESIGN.md §5 had max(100, N/10))."})
    bronze_fraction: float = field(default=0.0, metadata={
        "help": "Bronze: N * fraction (0 by default, see bronze_min)."})
    dedupe_threshold: float = field(default=0.8, metadata={
        "help": "Estimated Jaccard similarity (MinHash) at or above which two trajectories "
                "are near-duplicates; 1.0 keeps everything but exact duplicates."})
    minhash_permutations: int = field(default=64, metadata={
        "help": "MinHash signature length (a multiple of lsh_bands)."})
    lsh_bands: int = field(default=16, metadata={
        "help": "LSH bands used to find candidate duplicate pairs."})
    shingle_size: int = field(default=5, metadata={
        "help": "Character shingle length over the normalised task + final response."})

    def __post_init__(self) -> None:
        _check_int(self, ("platinum_min", "gold_min", "silver_min", "bronze_min"), low=0)
        _check_finite(self, ("platinum_fraction", "gold_fraction", "silver_fraction",
                             "bronze_fraction"), low=0.0, high=1.0)
        _check_finite(self, ("dedupe_threshold",), low=0.0, high=1.0)
        if self.dedupe_threshold <= 0.0:
            raise ConfigError(f"SelectionConfig.dedupe_threshold must be > 0, got "
                              f"{self.dedupe_threshold!r}")
        _check_int(self, ("minhash_permutations", "lsh_bands", "shingle_size"), low=1)
        if self.minhash_permutations % self.lsh_bands:
            raise ConfigError(
                f"SelectionConfig.minhash_permutations ({self.minhash_permutations!r}) must be "
                f"a multiple of lsh_bands ({self.lsh_bands!r})"
            )


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    """AutoTrigger rules (DESIGN.md §5)."""

    min_gap_days: float = field(default=3.0, metadata={
        "help": "Never train sooner than this after the last completed run."})
    stale_days: float = field(default=14.0, metadata={
        "help": "Train when the last completed run is at least this old."})
    stale_min_new: int = field(default=1, metadata={
        "help": "New scored trajectories needed before a staleness run (nothing new, "
                "nothing to train on)."})
    drop_fraction: float = field(default=0.05, metadata={
        "help": "Emergency run when the mean combined score since the last run fell this "
                "fraction below the mean before it."})
    drop_min_samples: int = field(default=30, metadata={
        "help": "Trajectories needed on each side before a quality drop counts."})
    baseline_window_days: float = field(default=14.0, metadata={
        "help": "The baseline is the mean combined score in this window before the last run."})
    min_new: int = field(default=500, metadata={
        "help": "New scored trajectories needed for a volume run."})
    high_quality_score: float = field(default=0.7, metadata={
        "help": "combined_score at or above which a trajectory is high quality."})
    high_quality_rate: float = field(default=0.4, metadata={
        "help": "Share of new trajectories that must be high quality for a volume run."})

    def __post_init__(self) -> None:
        _check_finite(self, ("min_gap_days", "stale_days", "baseline_window_days"), low=0.0)
        _check_finite(self, ("drop_fraction", "high_quality_rate"), low=0.0, high=1.0)
        _check_finite(self, ("high_quality_score",), low=-1.0, high=1.0)
        _check_int(self, ("stale_min_new", "drop_min_samples", "min_new"), low=0)
        if self.stale_days < self.min_gap_days:
            raise ConfigError(f"TriggerConfig.stale_days ({self.stale_days!r}) must be >= "
                              f"min_gap_days ({self.min_gap_days!r})")


@dataclass(frozen=True, slots=True)
class HttpJudgeConfig:
    """An OpenAI-compatible chat/completions endpoint used as a judge."""

    url: str = field(default="", metadata={
        "help": "Base URL, e.g. http://127.0.0.1:8000/v1 ('' disables the HTTP judge)."})
    model: str = field(default="judge", metadata={"help": "The model name sent in requests."})
    timeout_s: float = field(default=30.0, metadata={"help": "Per-request timeout, seconds."})
    api_key_env: str = field(default="", metadata={
        "help": "Environment variable holding a bearer token ('' sends none)."})
    allow_remote: bool = field(default=False, metadata={
        "help": "Allow a non-loopback host; trajectories then leave the node (invariant 8)."})
    name: str = field(default="http", metadata={"help": "Judge name in TrajectoryJudged."})

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"HttpJudgeConfig.url must start with http:// or https://, "
                              f"got {self.url!r}")
        _check_finite(self, ("timeout_s",), low=0.001)
        if not self.model or not self.name:
            raise ConfigError(f"HttpJudgeConfig.model and name must be non-empty, got "
                              f"model={self.model!r} name={self.name!r}")


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """The whole ``[quality]`` section."""

    implicit: ImplicitWeights = field(default_factory=ImplicitWeights, metadata={
        "help": "[quality.implicit]"})
    combine: CombineWeights = field(default_factory=CombineWeights, metadata={
        "help": "[quality.combine]"})
    tiers: TierConfig = field(default_factory=TierConfig, metadata={"help": "[quality.tiers]"})
    selection: SelectionConfig = field(default_factory=SelectionConfig, metadata={
        "help": "[quality.selection]"})
    trigger: TriggerConfig = field(default_factory=TriggerConfig, metadata={
        "help": "[quality.trigger]"})
    judge_http: HttpJudgeConfig = field(default_factory=HttpJudgeConfig, metadata={
        "help": "[quality.judge_http]"})
    curated: CuratedConfig = field(default_factory=CuratedConfig, metadata={
        "help": "[quality.curated]"})

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> QualityConfig:
        """Build from the ``[quality]`` table; unknown keys raise ``ConfigError``."""
        kinds: dict[str, type[Any]] = {
            "implicit": ImplicitWeights, "combine": CombineWeights, "tiers": TierConfig,
            "selection": SelectionConfig, "trigger": TriggerConfig,
            "judge_http": HttpJudgeConfig, "curated": CuratedConfig,
        }
        parts: dict[str, Any] = {}
        for key, value in section.items():
            if key not in kinds:
                raise ConfigError(f"[quality] unknown key {key!r}; expected one of "
                                  f"{sorted(kinds)}")
            if not isinstance(value, Mapping):
                raise ConfigError(f"[quality.{key}] must be a table, got {value!r}")
            parts[key] = _build(kinds[key], value, f"quality.{key}")
        return cls(**parts)

    @classmethod
    def from_toml(cls, path: str | Path) -> QualityConfig:
        """Read the ``[quality]`` section of a TOML file (absent section: defaults)."""
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        section = doc.get("quality", {})
        if not isinstance(section, Mapping):
            raise ConfigError(f"[quality] in {path} must be a table")
        return cls.from_mapping(section)


T = TypeVar("T")


def _build(kind: type[T], values: Mapping[str, Any], where: str) -> T:
    known = {f.name for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    for key in values:
        if key not in known:
            raise ConfigError(f"[{where}] unknown key {key!r}; expected one of {sorted(known)}")
    return kind(**values)
