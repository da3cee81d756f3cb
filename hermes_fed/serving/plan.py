"""The node's traffic plan and the routing it implies (DESIGN.md §10).

A plan is a test id and arms ``[{name, version, share}]``, one of them marked production.
A user's arm is the node's keyed hash of (user, test id) (:mod:`.assignment`), so a user
stays on one arm for the whole life of a test, on every gateway replica of the tenant and
across restarts; a request without a user goes to the production arm. An arm's version is
the name the upstream serves it under (an adapter loaded by versioned name, or ``base`` for
the base model itself).

Invariants (tests cite them)
----------------------------
P1. Same secret, test id, arms and user -> same arm (sticky).
P2. Over many users, an arm's share of users is its ``share`` (binomial bounds).
P3. A plan that does not validate is refused whole, naming the field and the value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hermes_fed.errors import ConfigError

from .assignment import Arm, assign

BASE_VERSION = "base"
"""The version name of the upstream's base model (no adapter)."""

PLAN_STREAM = "traffic-plan"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}")
_SHARE_TOLERANCE = 1e-6


def check_name(value: Any, field: str) -> str:
    """A test id, arm name or version: 1..128 of ``[A-Za-z0-9._:+-]``, starting alphanumeric
    (it becomes an adapter name on the upstream and a path under the node's directory)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigError(f"{field} must be 1..128 characters of [A-Za-z0-9._:+-] starting "
                          f"with a letter or digit, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class PlanArm:
    """One arm: its name, the model version it serves and its share of users."""

    name: str
    version: str
    share: float

    def __post_init__(self) -> None:
        check_name(self.name, "arm name")
        check_name(self.version, f"arm {self.name!r} version")
        if isinstance(self.share, bool) or not isinstance(self.share, int | float) \
                or not math.isfinite(self.share) or not 0 < self.share <= 1:
            raise ConfigError(f"arm {self.name!r} share must be in (0, 1], got {self.share!r}")


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes: the arm, and whether a user was hashed to it."""

    arm: PlanArm
    test_id: str
    by_user: bool


@dataclass(frozen=True, slots=True)
class TrafficPlan:
    """A validated traffic plan (P3)."""

    test_id: str
    arms: tuple[PlanArm, ...]
    production: str

    def __post_init__(self) -> None:
        check_name(self.test_id, "test_id")
        if not self.arms:
            raise ConfigError("a traffic plan needs at least one arm")
        names = [a.name for a in self.arms]
        versions = [a.version for a in self.arms]
        if len(set(names)) != len(names):
            raise ConfigError(f"arm names must be distinct, got {names!r}")
        if len(set(versions)) != len(versions):
            raise ConfigError(f"arm versions must be distinct, got {versions!r}")
        total = math.fsum(a.share for a in self.arms)
        if abs(total - 1.0) > _SHARE_TOLERANCE:
            raise ConfigError(f"arm shares must sum to 1, got {total!r}")
        if self.production not in names:
            raise ConfigError(f"production must name an arm ({names!r}), got {self.production!r}")

    @classmethod
    def single(cls, version: str, test_id: str | None = None) -> TrafficPlan:
        """Everyone on one version (no test)."""
        return cls(test_id or f"prod-{version}", (PlanArm("production", version, 1.0),),
                   "production")

    @property
    def production_arm(self) -> PlanArm:
        return next(a for a in self.arms if a.name == self.production)

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(a.version for a in self.arms)

    def arm_named(self, name: str) -> PlanArm | None:
        return next((a for a in self.arms if a.name == name), None)

    def route(self, secret: bytes, user_ref: str | None) -> Route:
        """The arm of ``user_ref`` (P1, P2), or the production arm without a user."""
        if not user_ref:
            return Route(self.production_arm, self.test_id, False)
        if len(self.arms) == 1:
            return Route(self.arms[0], self.test_id, True)
        arm, _point = assign(secret, self.test_id, user_ref,
                             [Arm(a.name, a.share) for a in self.arms])
        chosen = self.arm_named(arm.name)
        assert chosen is not None
        return Route(chosen, self.test_id, True)

    # --- records ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"test_id": self.test_id, "production": self.production,
                "arms": [{"name": a.name, "version": a.version, "share": a.share}
                         for a in self.arms]}

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> TrafficPlan:
        """Parse ``to_dict``'s shape; raises ``ConfigError`` naming the field."""
        if not isinstance(body, Mapping):
            raise ConfigError(f"a traffic plan must be an object, got {type(body).__name__}")
        unknown = set(body) - {"test_id", "production", "arms"}
        if unknown:
            raise ConfigError(f"traffic plan: unknown keys {sorted(unknown)!r}")
        raw_arms = body.get("arms")
        if not isinstance(raw_arms, list):
            raise ConfigError(f"arms must be a list, got {type(raw_arms).__name__}")
        arms = []
        for index, raw in enumerate(raw_arms):
            if not isinstance(raw, Mapping) or set(raw) != {"name", "version", "share"}:
                raise ConfigError(f"arms[{index}] must be {{name, version, share}}, got {raw!r}")
            arms.append(PlanArm(raw["name"], raw["version"], raw["share"]))
        production = body.get("production", arms[0].name if arms else "")
        return cls(body.get("test_id", ""), tuple(arms), production)

    def to_event_data(self) -> dict[str, Any]:
        """The data of ``TrafficPlanApplied`` (keys the redactor leaves as they are)."""
        return {"ab_test_id": self.test_id,
                "arms": [{"variant": a.name, "model_version": a.version, "share": a.share,
                          "production": a.name == self.production} for a in self.arms]}

    @classmethod
    def from_event_data(cls, data: Mapping[str, Any]) -> TrafficPlan:
        arms: Sequence[Mapping[str, Any]] = data.get("arms") or []
        production = next((a["variant"] for a in arms if a.get("production")), "")
        return cls(str(data.get("ab_test_id", "")),
                   tuple(PlanArm(a["variant"], a["model_version"], a["share"]) for a in arms),
                   production)


def parse_arm(spec: str) -> PlanArm:
    """``NAME=VERSION:SHARE`` (the CLI's ``--arm``)."""
    name, eq, rest = spec.partition("=")
    version, colon, share = rest.rpartition(":")
    if not eq or not colon:
        raise ConfigError(f"--arm must be NAME=VERSION:SHARE, got {spec!r}")
    try:
        value = float(share)
    except ValueError:
        raise ConfigError(f"--arm {spec!r}: share must be a number, got {share!r}") from None
    return PlanArm(name, version, value)
