"""Staged promotion of adapter versions, as a pure state machine over promotion facts.

A version moves ``candidate -> canary (1%) -> ab (9%) -> production`` one stage at a time,
and can be rolled back from any live stage. The facts map one-to-one onto the coordinator's
``ModelPromoted{version, stage, traffic_fraction, reason}`` and
``ModelRolledBack{version, to_version, reason}`` events (`fact_from_event`,
`fact_to_event`), so the registry's state is ``replay(facts)`` of its event stream. Commands
(`promote`, `rollback`, `feedback_guard`) return the next fact after checking it; the caller
appends it as an event, then folds it with `apply`.

Invariants (tests cite them)
----------------------------
P1. Only the edges of `TRANSITIONS` are taken; any other fact raises
    `IllegalTransitionError` naming the version, its stage and the requested stage.
P2. At most one version holds each of canary, ab and production; traffic fractions of the
    live stages sum to 1 (production takes what canary and ab do not).
P3. Promoting a version to production supersedes the previous one; rolling the production
    version back restores the most recent superseded version that was not rolled back.
P4. rolled_back is terminal; ``apply`` never mutates its input state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from hermes_fed.abtest.trend import QualityGuardConfig, quality_trend
from hermes_fed.errors import ConfigError, IllegalTransitionError

__all__ = [
    "TRANSITIONS",
    "Fact",
    "Promoted",
    "PromotionConfig",
    "RegistryState",
    "RolledBack",
    "Stage",
    "VersionState",
    "apply",
    "fact_from_event",
    "fact_to_event",
    "feedback_guard",
    "promote",
    "replay",
    "rollback",
]


class Stage(StrEnum):
    CANDIDATE = "candidate"
    CANARY = "canary"
    AB = "ab"
    PRODUCTION = "production"
    SUPERSEDED = "superseded"  # was production, replaced by a newer version (restorable)
    ROLLED_BACK = "rolled_back"


#: Legal (from, to) edges. ``None`` is "not registered"; superseded <-> production happen
#: only as side effects of a promotion to production / a rollback of production.
TRANSITIONS: frozenset[tuple[Stage | None, Stage]] = frozenset(
    {
        (None, Stage.CANDIDATE),
        (Stage.CANDIDATE, Stage.CANARY),
        (Stage.CANARY, Stage.AB),
        (Stage.AB, Stage.PRODUCTION),
        (Stage.CANDIDATE, Stage.ROLLED_BACK),
        (Stage.CANARY, Stage.ROLLED_BACK),
        (Stage.AB, Stage.ROLLED_BACK),
        (Stage.PRODUCTION, Stage.ROLLED_BACK),
    }
)
_NEXT = {None: Stage.CANDIDATE, Stage.CANDIDATE: Stage.CANARY, Stage.CANARY: Stage.AB,
         Stage.AB: Stage.PRODUCTION}  # fmt: skip
_EXCLUSIVE = (Stage.CANARY, Stage.AB, Stage.PRODUCTION)


@dataclass(frozen=True, slots=True)
class PromotionConfig:
    """Traffic fraction of each stage; production serves the remainder."""

    canary_fraction: float = field(
        default=0.01, metadata={"help": "Share of traffic served by the canary version."}
    )
    ab_fraction: float = field(
        default=0.09, metadata={"help": "Share of traffic served by the version under A/B."}
    )

    def __post_init__(self) -> None:
        for name in ("canary_fraction", "ab_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, float | int) and 0.0 < value < 1.0):
                raise ConfigError(f"PromotionConfig.{name} must be in (0, 1), got {value!r}")
        if self.canary_fraction > self.ab_fraction:
            raise ConfigError(
                f"PromotionConfig.canary_fraction ({self.canary_fraction!r}) must not exceed "
                f"ab_fraction ({self.ab_fraction!r}): exposure only grows along the stages"
            )
        if self.canary_fraction + self.ab_fraction >= 1.0:
            raise ConfigError(
                "PromotionConfig.canary_fraction + ab_fraction must be < 1 (production needs "
                f"traffic), got {self.canary_fraction!r} + {self.ab_fraction!r}"
            )

    def fraction(self, stage: Stage) -> float:
        """Traffic fraction recorded for a promotion to ``stage``."""
        return {Stage.CANDIDATE: 0.0, Stage.CANARY: self.canary_fraction,
                Stage.AB: self.ab_fraction, Stage.PRODUCTION: 1.0}[stage]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Promoted:
    """``ModelPromoted``: ``version`` enters ``stage`` serving ``traffic_fraction``
    (0 for candidate, 1.0 for production, which means "the remainder")."""

    version: str
    stage: Stage
    traffic_fraction: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RolledBack:
    """``ModelRolledBack``: ``version`` is withdrawn; traffic returns to ``to_version``."""

    version: str
    to_version: str | None
    reason: str


Fact = Promoted | RolledBack


@dataclass(frozen=True, slots=True)
class VersionState:
    version: str
    stage: Stage
    traffic_fraction: float
    reason: str


@dataclass(frozen=True, slots=True)
class RegistryState:
    """Every registered version's stage, the production lineage and the facts applied."""

    versions: tuple[VersionState, ...] = ()
    production_lineage: tuple[str, ...] = ()  # production versions in order, newest last
    history: tuple[Fact, ...] = ()

    def get(self, version: str) -> VersionState | None:
        return next((v for v in self.versions if v.version == version), None)

    def holder(self, stage: Stage) -> str | None:
        """The version in ``stage`` (canary, ab or production hold at most one: P2)."""
        return next((v.version for v in self.versions if v.stage is stage), None)

    @property
    def production(self) -> str | None:
        return self.holder(Stage.PRODUCTION)

    def traffic(self) -> dict[str | None, float]:
        """Share of traffic per version; ``None`` is the base model when none is in production."""
        shares: dict[str | None, float] = {
            v.version: v.traffic_fraction for v in self.versions
            if v.stage in (Stage.CANARY, Stage.AB)
        }  # fmt: skip
        shares[self.production] = 1.0 - math.fsum(shares.values())
        return shares

    def _with(self, *updates: VersionState) -> tuple[VersionState, ...]:
        by_id = {u.version: u for u in updates}
        kept = tuple(by_id.pop(v.version, v) for v in self.versions)
        return kept + tuple(by_id.values())


def _illegal(version: str, current: Stage | None, to: Stage, why: str = "") -> None:
    frm = current.value if current else "unregistered"
    msg = f"version {version!r}: illegal transition from {frm} to {to.value}"
    raise IllegalTransitionError(msg + (f" ({why})" if why else ""))


def apply(state: RegistryState, fact: Fact) -> RegistryState:
    """Fold one fact into the state, or raise `IllegalTransitionError` (P1-P4)."""
    current = state.get(fact.version)
    frm = current.stage if current else None
    if isinstance(fact, Promoted):
        return _apply_promoted(state, fact, frm)
    return _apply_rolled_back(state, fact, frm)


def _apply_promoted(state: RegistryState, fact: Promoted, frm: Stage | None) -> RegistryState:
    to = Stage(fact.stage)
    if (frm, to) not in TRANSITIONS:
        _illegal(fact.version, frm, to)
    holder = state.holder(to) if to in _EXCLUSIVE else None
    if holder is not None and to is not Stage.PRODUCTION:
        _illegal(fact.version, frm, to, f"{to.value} is held by {holder!r}")
    f = fact.traffic_fraction
    if to is Stage.CANDIDATE and f != 0.0:
        _illegal(fact.version, frm, to, f"a candidate serves no traffic, got fraction {f!r}")
    if to is Stage.PRODUCTION and f != 1.0:
        _illegal(fact.version, frm, to, f"production's fraction is 1.0 (the rest), got {f!r}")
    if to in (Stage.CANARY, Stage.AB):
        others = math.fsum(
            v.traffic_fraction for v in state.versions
            if v.stage in (Stage.CANARY, Stage.AB) and v.version != fact.version
        )  # fmt: skip
        if not (0.0 < f < 1.0 and others + f < 1.0):
            _illegal(fact.version, frm, to, f"fraction {f!r} with {others!r} elsewhere")
    updates = [VersionState(fact.version, to, f, fact.reason)]
    lineage = state.production_lineage
    if to is Stage.PRODUCTION:
        old = state.get(holder) if holder else None
        if old is not None:
            updates.append(replace(old, stage=Stage.SUPERSEDED, traffic_fraction=0.0,
                                   reason=f"superseded by {fact.version}"))  # fmt: skip
        lineage = (*lineage, fact.version)
    return RegistryState(state._with(*updates), lineage, (*state.history, fact))


def _restorable(state: RegistryState, excluding: str) -> str | None:
    for version in reversed(state.production_lineage):
        v = state.get(version)
        if version != excluding and v is not None and v.stage is Stage.SUPERSEDED:
            return version
    return None


def _apply_rolled_back(state: RegistryState, fact: RolledBack, frm: Stage | None) -> RegistryState:
    if (frm, Stage.ROLLED_BACK) not in TRANSITIONS:
        _illegal(fact.version, frm, Stage.ROLLED_BACK)
    expected = _restorable(state, fact.version) if frm is Stage.PRODUCTION else state.production
    if fact.to_version != expected:
        _illegal(fact.version, frm, Stage.ROLLED_BACK,
                 f"traffic returns to {expected!r}, the fact says {fact.to_version!r}")  # fmt: skip
    updates = [VersionState(fact.version, Stage.ROLLED_BACK, 0.0, fact.reason)]
    if frm is Stage.PRODUCTION and expected is not None:
        updates.append(VersionState(expected, Stage.PRODUCTION, 1.0,
                                    f"restored: {fact.version} rolled back"))  # fmt: skip
    return RegistryState(state._with(*updates), state.production_lineage, (*state.history, fact))


def replay(facts: Iterable[Fact], state: RegistryState | None = None) -> RegistryState:
    """The state after folding ``facts`` in order into ``state`` (empty by default)."""
    result = state or RegistryState()
    for fact in facts:
        result = apply(result, fact)
    return result


def promote(
    state: RegistryState, version: str, config: PromotionConfig | None = None, reason: str = ""
) -> Promoted:
    """The fact moving ``version`` to its next stage (registering it as a candidate first)."""
    cfg = config or PromotionConfig()
    current = state.get(version)
    frm = current.stage if current else None
    to = _NEXT.get(frm)
    if to is None:
        assert frm is not None
        raise IllegalTransitionError(f"version {version!r}: no promotion from {frm.value}")
    fact = Promoted(version, to, cfg.fraction(to), reason)
    apply(state, fact)  # validate now, so the caller never appends an illegal event
    return fact


def rollback(state: RegistryState, version: str, reason: str) -> RolledBack:
    """The fact withdrawing ``version``; traffic returns to production or its predecessor."""
    current = state.get(version)
    frm = current.stage if current else None
    to_version = _restorable(state, version) if frm is Stage.PRODUCTION else state.production
    fact = RolledBack(version, to_version, reason)
    apply(state, fact)
    return fact


def fact_to_event(fact: Fact) -> tuple[str, dict[str, Any]]:
    """``(event type, data)`` of the ``ModelPromoted`` / ``ModelRolledBack`` event."""
    if isinstance(fact, Promoted):
        return "ModelPromoted", {
            "version": fact.version,
            "stage": fact.stage.value,
            "traffic_fraction": fact.traffic_fraction,
            "reason": fact.reason,
        }
    return "ModelRolledBack", {"version": fact.version, "to_version": fact.to_version,
                               "reason": fact.reason}  # fmt: skip


def fact_from_event(event_type: str, data: Mapping[str, Any]) -> Fact:
    """The fact of a stored ``ModelPromoted`` / ``ModelRolledBack`` event's data."""
    if event_type == "ModelPromoted":
        return Promoted(
            str(data["version"]),
            Stage(data["stage"]),
            float(data["traffic_fraction"]),
            str(data.get("reason", "")),
        )
    if event_type == "ModelRolledBack":
        to = data.get("to_version")
        return RolledBack(str(data["version"]), None if to is None else str(to),
                          str(data["reason"]))  # fmt: skip
    raise ValueError(f"not a promotion event type: {event_type!r}")


def feedback_guard(
    state: RegistryState,
    scores: Sequence[float],
    baseline: float | None = None,
    config: QualityGuardConfig | None = None,
) -> RolledBack | None:
    """The rollback of the production version if its quality trend breaches, else None.

    ``scores`` are the production version's per-round quality since its promotion. A
    negative feedback loop (a model trained on its own degrading outputs) shows as a steady
    fall across rounds that no single A/B look would catch.
    """
    version = state.production
    if version is None:
        return None
    trend = quality_trend(scores, baseline, config)
    if not trend.breached:
        return None
    return rollback(state, version, f"negative-feedback-loop guard: {trend.reason}")
