"""Questions the coordinator asks nodes (``query.*`` messages) and their payloads.

:class:`AbQuery` is the ``config`` of ``query.ab_stats``: an A/B test's facts (its
``ABTestCreated``) and what to measure:

* ``online``: per-arm statistics of the users' session quality (the unit is the user);
* ``offline``: paired held-out differences of the ``candidate`` adapter against the
  ``current`` one (sent beside the config; no ``current``: the base model);
* ``version``: the session quality of one model version since a time (the production
  guard's per-look figure).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flwr.app import ConfigRecord

from hermes_fed.errors import FederationError

AB_MODES: tuple[str, ...] = ("online", "offline", "version")
CONTROL_ARM = "control"
TREATMENT_ARM = "treatment"


@dataclass(frozen=True, slots=True)
class AbQuery:
    """What ``query.ab_stats`` asks (see the module docstring for the modes)."""

    mode: str
    ab_test_id: str = ""
    control: str = ""
    treatment: str = ""
    traffic_split: float = 0.1
    min_samples: int = 0
    duration_days: int = 0
    version: str = ""
    since_us: int = 0
    rank: int = 8
    alpha: float = 16.0
    max_length: int = 256

    def __post_init__(self) -> None:
        if self.mode not in AB_MODES:
            raise FederationError(f"ab_stats mode must be one of {AB_MODES}, got {self.mode!r}")
        if self.mode in ("online", "offline") and not (
                self.ab_test_id and self.control and self.treatment):
            raise FederationError(f"ab_stats {self.mode} needs ab-test-id, control and treatment")
        if self.mode == "version" and not self.version:
            raise FederationError("ab_stats version needs version")
        if not 0.0 < self.traffic_split < 1.0:
            raise FederationError(f"ab_stats traffic-split must be in (0, 1), "
                                  f"got {self.traffic_split!r}")

    def to_record(self) -> ConfigRecord:
        return ConfigRecord({
            "mode": self.mode, "ab-test-id": self.ab_test_id, "control": self.control,
            "treatment": self.treatment, "traffic-split": float(self.traffic_split),
            "min-samples": int(self.min_samples), "duration-days": int(self.duration_days),
            "version": self.version, "since-us": int(self.since_us), "rank": int(self.rank),
            "alpha": float(self.alpha), "max-length": int(self.max_length)})

    @classmethod
    def from_record(cls, config: Mapping[str, Any]) -> AbQuery:
        try:
            return cls(
                mode=str(config["mode"]), ab_test_id=str(config.get("ab-test-id", "")),
                control=str(config.get("control", "")),
                treatment=str(config.get("treatment", "")),
                traffic_split=float(config.get("traffic-split", 0.1)),
                min_samples=int(config.get("min-samples", 0)),
                duration_days=int(config.get("duration-days", 0)),
                version=str(config.get("version", "")),
                since_us=int(config.get("since-us", 0)), rank=int(config.get("rank", 8)),
                alpha=float(config.get("alpha", 16.0)),
                max_length=int(config.get("max-length", 256)))
        except (KeyError, ValueError, TypeError) as exc:
            raise FederationError(f"ab_stats config is missing or bad: {exc!r}") from None

    def arm_weights(self) -> dict[str, float]:
        """The arms users are assigned to for this test (the treatment gets the split)."""
        return {CONTROL_ARM: 1.0 - self.traffic_split, TREATMENT_ARM: self.traffic_split}
