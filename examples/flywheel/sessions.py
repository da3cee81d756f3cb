"""Simulated usage: a tenant's users ask, the agent answers, the users react — as events.

One session per task: ``SessionStarted`` (user ref, model version, the user's name as a
per-session deny term in metadata), ``TrajectoryRecorded``, the user's feedback events,
after a retry a second ``TrajectoryRecorded`` and its feedback, ``SessionEnded``. Event ids
are derived from (tenant, seed, session, position), so re-sending a round is a no-op
(invariant 3) and the same inputs give the same events.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from examples.flywheel.agent import AgentConfig, AgentOutcome, LocalAgent
from examples.flywheel.tasks import TaskInstance, family, trajectory_id_for
from examples.flywheel.tenants import PlantedPII, SimTenant
from examples.flywheel.users import Feedback, UserModel
from hermes_fed.events import NewEvent

_NAMESPACE = uuid.UUID("2b9d4f61-8a3e-4c0b-9f27-5d1e6a7c3b48")


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One simulated session: its events and what happened (for reports, never sent)."""

    events: tuple[NewEvent, ...]
    task: TaskInstance
    planted: PlantedPII
    outcomes: tuple[AgentOutcome, ...]
    feedback: tuple[Feedback, ...]
    arm: str = ""  # the A/B arm that served it ("" when no test routed it)

    @property
    def first_correct(self) -> bool:
        return self.outcomes[0].correct


@dataclass(frozen=True, slots=True)
class ArmRouting:
    """An online A/B test's routing: each user's arm decides which agent serves them.

    ``assign`` maps a user ref to an arm name (in the demo: the node's ``AssignVariant``,
    the tenant's keyed hash, recorded as ``VariantAssigned``); ``agents`` and ``versions``
    give each arm's agent and the model version its sessions name.
    """

    ab_test_id: str
    assign: Callable[[str], str]
    agents: Mapping[str, LocalAgent]
    versions: Mapping[str, str]


def trajectory_of(outcome: AgentOutcome, trajectory_id: str, task: TaskInstance,
                  user_text: str) -> dict[str, Any]:
    """The trajectory (CONTRIBUTING.md shape) of one agent attempt."""
    return {
        "trajectory_id": trajectory_id,
        "task": user_text,
        "task_type": task.task_type,
        "messages": [dict(m) for m in outcome.messages],
        "tools": [family(task.task_type).tool_schema],
        "final_response": outcome.final_response,
    }


def _events(stream: str, user_ref: str, model_version: str, planted: PlantedPII,
            raw: list[tuple[str, dict[str, Any]]], arm: tuple[str, str] | None = None
            ) -> tuple[NewEvent, ...]:
    started: dict[str, Any] = {"user_ref": user_ref, "model_version": model_version}
    if arm is not None:
        started["ab_test_id"], started["variant"] = arm
    meta = {"deny_terms": [planted.name]} if planted.name else {}
    out = [NewEvent(stream, "SessionStarted", started, metadata=meta, subject=user_ref,
                    event_id=uuid.uuid5(_NAMESPACE, f"{stream}/0"))]
    for i, (etype, data) in enumerate(raw, start=1):
        out.append(NewEvent(stream, etype, data, event_id=uuid.uuid5(_NAMESPACE, f"{stream}/{i}"),
                            subject=user_ref if etype == "TrajectoryRecorded" else None))
    out.append(NewEvent(stream, "SessionEnded", {"reason": "closed"},
                        event_id=uuid.uuid5(_NAMESPACE, f"{stream}/{len(raw) + 1}")))
    return tuple(out)


def broken(outcome: AgentOutcome) -> bool:
    """The agent visibly failed: no tool call, a malformed one, or a tool error."""
    return outcome.tool_call is None or outcome.malformed_call or outcome.tool_error


def _solve_by_arm(agents: Mapping[str, LocalAgent], arm_of: Sequence[str],
                  tasks: Sequence[tuple[TaskInstance, str]], indices: Sequence[int],
                  seed: int) -> dict[int, AgentOutcome]:
    """Solve ``tasks[i]`` for ``i`` in ``indices``, each with the agent of its arm."""
    out: dict[int, AgentOutcome] = {}
    for arm, agent in agents.items():
        mine = [i for i in indices if arm_of[i] == arm]
        if mine:
            out.update(zip(mine, agent.solve([tasks[i] for i in mine], seed), strict=True))
    return out


def run_sessions(tenant: SimTenant, agent: LocalAgent, n: int, seed: int, *,
                 model_version: str = "base", user_model: UserModel | None = None,
                 routing: ArmRouting | None = None) -> list[SessionRecord]:
    """Simulate ``n`` sessions of ``tenant`` with ``agent``; at most one retry per session.

    With ``routing``, a user in an arm of ``routing.agents`` is served by that arm's agent
    and its sessions name the test and the arm; any other user gets ``agent``.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    users = user_model or UserModel()
    rng = random.Random(f"sessions/{tenant.tenant_id}/{seed}")
    tasks = tenant.draw_tasks(n, seed)
    turns = [tenant.user_turn(t.request, rng) for t in tasks]
    asks = [(t, text) for t, (_, text, _) in zip(tasks, turns, strict=True)]
    agents: dict[str, LocalAgent] = {"": agent}
    arm_of = [""] * n
    if routing is not None:
        agents.update(routing.agents)
        arm_of = [a if (a := routing.assign(user_ref)) in routing.agents else ""
                  for user_ref, _, _ in turns]
    first = _solve_by_arm(agents, arm_of, asks, range(n), seed)
    feedback = [users.react(first[i].correct, broken(first[i]), rng) for i in range(n)]
    retried = [i for i, f in enumerate(feedback) if f.retry]
    second = _solve_by_arm(agents, arm_of, asks, retried, seed + 104_729)
    records = []
    for i, (task, (user_ref, text, planted)) in enumerate(zip(tasks, turns, strict=True)):
        stream = f"session-{tenant.tenant_id}-{seed}-{i}"
        outcomes, feedbacks = [first[i]], [feedback[i]]
        if i in second:
            outcomes.append(second[i])
            feedbacks.append(users.react(second[i].correct, broken(second[i]), rng,
                                         may_retry=False))
        raw: list[tuple[str, dict[str, Any]]] = []
        for k, (outcome, fb) in enumerate(zip(outcomes, feedbacks, strict=True)):
            tid = trajectory_id_for(stream, k)
            raw.append(("TrajectoryRecorded", trajectory_of(outcome, tid, task, text)))
            raw.extend(fb.events(tid))
        arm = arm_of[i]
        version = routing.versions[arm] if routing is not None and arm else model_version
        tag = (routing.ab_test_id, arm) if routing is not None and arm else None
        records.append(SessionRecord(_events(stream, user_ref, version, planted, raw, tag),
                                     task, planted, tuple(outcomes), tuple(feedbacks), arm))
    return records


def simulate_sessions(tenant: SimTenant, model_dir: str | Path,
                      adapter: Mapping[str, np.ndarray] | None, n: int, seed: int, *,
                      lora_config: Any = None, agent_config: AgentConfig | None = None,
                      model_version: str = "base", user_model: UserModel | None = None
                      ) -> list[list[NewEvent]]:
    """``n`` sessions of ``tenant`` run by the model (+ adapter): one event batch each.

    The batches are raw (PII included): send them through the node's redaction gate
    (``hermes_fed.client`` or ``Redactor.redact_new_events``) before they reach a log.
    """
    agent = LocalAgent(model_dir, adapter, lora_config, agent_config)
    return [list(r.events) for r in run_sessions(tenant, agent, n, seed,
                                                 model_version=model_version,
                                                 user_model=user_model)]


def outcome_counts(records: Sequence[SessionRecord]) -> dict[str, int]:
    """Counts of first attempts: correct, well-formed tool call, malformed call, tool error."""
    return attempt_counts([r.outcomes[0] for r in records],
                          sum(len(r.outcomes) > 1 for r in records))


def attempt_counts(firsts: Sequence[AgentOutcome], retries: int) -> dict[str, int]:
    """Counts of sessions' first attempts, and how many sessions were retried."""
    return {
        "sessions": len(firsts),
        "correct": sum(o.correct for o in firsts),
        "tool_called": sum(o.tool_call is not None for o in firsts),
        "malformed_call": sum(o.malformed_call for o in firsts),
        "tool_error": sum(o.tool_error for o in firsts),
        "retries": retries,
    }
