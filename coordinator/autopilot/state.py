"""The autopilot's state: a fold of the coordinator's log (DESIGN.md §11).

The autopilot writes four event types on the stream ``autopilot`` of the coordinator's
store (:mod:`hermes_fed.events.coordinator`): ``AutopilotStepIntended`` *before* a step,
``AutopilotStepCompleted`` after it, ``AutopilotWaited`` when it decides not to act and
``AutopilotCycleEnded``. Its state is :func:`fold` of those events and of the promotion
facts (``ModelPromoted`` / ``ModelRolledBack``, whoever wrote them), in log order; nothing
else is kept, so a restarted coordinator is where the log says it is.

A cycle goes ``waiting -> training -> offline_look -> canary -> ab -> production`` or
``... -> rolled_back``, then ``waiting`` again (the next cycle). An intent without its
outcome is ``pending``: the runner finishes it before deciding anything new.

Invariants (tests cite them)
----------------------------
AP1. The state is a pure function of the events (folding the same events twice gives
     equal states; folding never reads a clock or a store).
AP2. At most one step is pending, and a step number is never reused within a cycle
     (``(cycle, step)`` is the idempotency key of its intent and its outcome).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from hermes_fed.registry.promotion import RegistryState, apply, fact_from_event

STREAM = "autopilot"
INTENDED = "AutopilotStepIntended"
COMPLETED = "AutopilotStepCompleted"
WAITED = "AutopilotWaited"
CYCLE_ENDED = "AutopilotCycleEnded"
AUTOPILOT_TYPES = (INTENDED, COMPLETED, WAITED, CYCLE_ENDED)
PROMOTION_TYPES = ("ModelPromoted", "ModelRolledBack")
FOLDED_TYPES = AUTOPILOT_TYPES + PROMOTION_TYPES
RECENT = 20


class Phase(StrEnum):
    WAITING = "waiting"
    TRAINING = "training"
    OFFLINE_LOOK = "offline_look"
    CANARY = "canary"
    AB = "ab"
    PRODUCTION = "production"  # promoted: the production plan is being delivered
    ROLLED_BACK = "rolled_back"  # withdrawn: the previous plan is being delivered


class Action(StrEnum):
    TRAIN = "train"
    OFFLINE_LOOK = "offline_look"
    PROMOTE = "promote"
    CANARY_LOOK = "canary_look"
    AB_LOOK = "ab_look"
    ROLLBACK = "rollback"
    DEPLOY = "deploy"
    QUALITY_LOOK = "quality_look"


class LogEntry(Protocol):
    """What the fold reads of a stored event (``StoredEvent`` is one)."""

    @property
    def position(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> Mapping[str, Any]: ...
    @property
    def occurred_at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class Intent:
    """A step the autopilot wrote it would do."""

    cycle: int
    step: int
    action: Action
    params: Mapping[str, Any]
    reason: str
    numbers: Mapping[str, Any]
    position: int
    at: datetime


@dataclass(frozen=True, slots=True)
class Note:
    """One line of the autopilot's history: a decision or an outcome, with its reason."""

    at: datetime
    cycle: int
    kind: str  # intended | completed | failed | waited | cycle_ended
    what: str
    reason: str
    numbers: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "cycle": self.cycle, "kind": self.kind,
                "what": self.what, "reason": self.reason, "numbers": dict(self.numbers)}


@dataclass(frozen=True, slots=True)
class AutopilotState:
    """Where the wheel is (module docstring); every field comes from the log."""

    cycle: int = 1
    phase: Phase = Phase.WAITING
    step: int = 0
    pending: Intent | None = None
    candidate: str | None = None
    parent: str | None = None
    ab_test_id: str | None = None
    phase_since: datetime | None = None
    last_look: Mapping[str, Any] | None = None
    last_look_at: datetime | None = None
    train_failed: str | None = None
    plan_applied: Mapping[str, Any] | None = None
    node_plans: Mapping[str, str] = field(default_factory=dict)
    deploy_failed: tuple[str, ...] = ()
    deploy_failed_at: datetime | None = None
    deploy_attempts: int = 0
    started_at: datetime | None = None
    last_trained_at: datetime | None = None
    last_quality: Mapping[str, Any] | None = None
    last_quality_at: datetime | None = None
    readiness: Mapping[str, Any] = field(default_factory=dict)
    unanswered: tuple[str, ...] = ()  # "<tenant>: <why>" of nodes the last poll missed
    ended: Mapping[str, int] = field(default_factory=dict)  # cycles by outcome, all time
    last_failed_at: datetime | None = None  # when the latest cycle ended failed
    last_wait: tuple[str, str] | None = None  # (reason, readiness key) of the latest wait
    registry: RegistryState = field(default_factory=RegistryState)
    recent: tuple[Note, ...] = ()
    cycles: tuple[Mapping[str, Any], ...] = ()
    # (version, the production it was trained from) of the latest candidate whose online
    # A/B ended inconclusive: the next cycle may train on from it (decide._waiting)
    carry_forward: tuple[str, str | None] | None = None
    stream_version: int = 0

    def noted(self, note: Note) -> tuple[Note, ...]:
        return (*self.recent, note)[-RECENT:]


def _intent(entry: LogEntry) -> Intent:
    d = entry.data
    return Intent(int(d["cycle"]), int(d["step"]), Action(d["action"]), dict(d["params"]),
                  str(d["reason"]), dict(d["numbers"]), entry.position, entry.occurred_at)


def readiness_key(readiness: Mapping[str, Any]) -> str:
    """What a change of readiness means for recording a wait: each tenant's verdict."""
    return ",".join(f"{t}:{r.get('rule')}:{int(bool(r.get('train')))}"
                    for t, r in sorted(readiness.items()))


def _completed(state: AutopilotState, entry: LogEntry) -> AutopilotState:
    d, at = entry.data, entry.occurred_at
    action, ok, result = Action(d["action"]), bool(d["ok"]), dict(d["result"])
    intent = state.pending
    params: Mapping[str, Any] = intent.params if intent is not None else {}
    note = Note(at, state.cycle, "completed" if ok else "failed", str(action),
                str(result.get("reason", "")), result)
    s = replace(state, pending=None, recent=state.noted(note))
    if action is Action.TRAIN:
        if ok:
            return replace(s, phase=Phase.OFFLINE_LOOK, candidate=str(result["version"]),
                           last_trained_at=at, last_look=None, last_look_at=None)
        return replace(s, train_failed=str(result.get("reason", "training failed")))
    if action in (Action.OFFLINE_LOOK, Action.CANARY_LOOK, Action.AB_LOOK):
        if action is Action.OFFLINE_LOOK and result.get("ab_test_id"):
            s = replace(s, ab_test_id=str(result["ab_test_id"]))
        return replace(s, last_look=result if ok else None, last_look_at=at)
    if action is Action.PROMOTE and ok:
        stage = str(params.get("stage"))
        phase = {"canary": Phase.CANARY, "ab": Phase.AB,
                 "production": Phase.PRODUCTION}.get(stage, s.phase)
        return replace(s, phase=phase, phase_since=at, last_look=None, last_look_at=None)
    if action is Action.ROLLBACK and ok:
        if params.get("version") == s.candidate:
            return replace(s, phase=Phase.ROLLED_BACK, phase_since=at)
        return replace(s, last_quality=None)  # production withdrawn by the guard
    if action is Action.DEPLOY:
        acks = {str(t): str(p) for t, p in dict(result.get("applied", {})).items()}
        plans = {**s.node_plans, **acks}
        if ok:
            return replace(s, plan_applied=dict(params["plan"]), node_plans=plans,
                           deploy_failed=(), deploy_failed_at=None, deploy_attempts=0)
        return replace(s, node_plans=plans, deploy_failed=tuple(result.get("failed", ())),
                       deploy_failed_at=at, deploy_attempts=s.deploy_attempts + 1)
    if action is Action.QUALITY_LOOK:
        return replace(s, last_quality=result if ok else None, last_quality_at=at)
    return s


def _carried(state: AutopilotState, outcome: str) -> tuple[str, str | None] | None:
    """What a cycle that ends now leaves for the next one to train on from.

    A candidate rolled back because its online A/B was *inconclusive* at its planned end
    (not harmful, not significantly worse, not futile, assignment sound) passed the offline
    look and simply could not be told apart from production with the users the test had;
    its training is not thrown away. Anything else -- production reached, a harm or
    guardrail rollback, a canary breach -- starts the next cycle from production again. A
    failed cycle (training failed) leaves what was there.
    """
    if outcome == "failed":
        return state.carry_forward
    look = state.last_look or {}
    numbers = look.get("numbers") or {}
    if (outcome == "rolled_back" and state.phase is Phase.ROLLED_BACK
            and state.candidate is not None and look.get("verdict") == "ROLLBACK"
            and numbers.get("rule") == "inconclusive"):
        return (state.candidate, state.parent)
    return None


def fold_one(state: AutopilotState, entry: LogEntry) -> AutopilotState:
    """The state after one more event (AP1)."""
    kind, d, at = entry.type, entry.data, entry.occurred_at
    if kind in PROMOTION_TYPES:
        return replace(state, registry=apply(state.registry, fact_from_event(kind, d)))
    if kind not in AUTOPILOT_TYPES:
        return state
    state = replace(state, stream_version=state.stream_version + 1,
                    started_at=state.started_at or at)
    if kind == INTENDED:
        intent = _intent(entry)
        note = Note(at, intent.cycle, "intended", str(intent.action), intent.reason,
                    intent.numbers)
        s = replace(state, pending=intent, step=max(state.step, intent.step),
                    recent=state.noted(note))
        if intent.action is Action.TRAIN:
            s = replace(s, phase=Phase.TRAINING, parent=intent.params.get("parent"),
                        train_failed=None,
                        readiness=dict(intent.numbers.get("tenants", s.readiness)),
                        unanswered=tuple(intent.numbers.get("missing", s.unanswered)))
        return s
    if kind == COMPLETED:
        return _completed(state, entry)
    if kind == WAITED:
        readiness = dict(d["numbers"].get("tenants", state.readiness))
        return replace(state, readiness=readiness,
                       unanswered=tuple(d["numbers"].get("missing", state.unanswered)),
                       last_wait=(str(d["reason"]), readiness_key(readiness)),
                       recent=state.noted(Note(at, int(d["cycle"]), "waited", "wait",
                                               str(d["reason"]), dict(d["numbers"]))))
    # CYCLE_ENDED
    summary = {"cycle": int(d["cycle"]), "outcome": str(d["outcome"]),
               "version": d.get("version"), "reason": str(d["reason"]), "at": at.isoformat()}
    return replace(state, cycle=int(d["cycle"]) + 1, phase=Phase.WAITING, step=0,
                   carry_forward=_carried(state, str(d["outcome"])),
                   pending=None, candidate=None, parent=None, ab_test_id=None,
                   phase_since=None, last_look=None, last_look_at=None, train_failed=None,
                   last_failed_at=at if d["outcome"] == "failed" else state.last_failed_at,
                   cycles=(*state.cycles, summary)[-RECENT:],
                   ended={**state.ended, str(d["outcome"]): state.ended.get(
                       str(d["outcome"]), 0) + 1},
                   recent=state.noted(Note(at, int(d["cycle"]), "cycle_ended",
                                           str(d["outcome"]), str(d["reason"]),
                                           {"version": d.get("version")})))


def fold(entries: Iterable[LogEntry], state: AutopilotState | None = None) -> AutopilotState:
    """Fold the log's autopilot and promotion events, in position order (AP1)."""
    result = state or AutopilotState()
    for entry in entries:
        result = fold_one(result, entry)
    return result
