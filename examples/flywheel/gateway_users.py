"""Simulated users of an unmodified agent that talks to a tenant node's gateway.

The agent is what a deployer runs: an OpenAI client (the official ``openai`` package) whose
base URL is the node's gateway, with a ``user`` per request. Per task, it asks for a call of
the task's tool (``tool_choice="required"``, the tool's JSON schema), runs the tool, sends
the tool's result back and reads the final answer -- two chat calls, which the gateway
assembles into one trajectory (``X-Hermes-Session`` names the session, ``X-Hermes-Task-Type``
the task type, as an agent that knows them sends them). The user then reacts
(:class:`~examples.flywheel.users.UserModel`): feedback goes to ``POST /v1/feedback`` with the
answer's ``X-Hermes-Trajectory-Id``; a retry is the same request sent again, which the
gateway itself records as a retry. Which version served the user is the gateway's business
(its traffic plan, a keyed hash of the user): the agent never names an arm.

Nothing here decides anything for the flywheel; the demo reads what the gateway recorded
(arm, version) back from the node's log for its report.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from examples.flywheel.agent import AgentOutcome, ToolCall, finish_attempt
from examples.flywheel.sessions import attempt_counts, broken
from examples.flywheel.tasks import SYSTEM_PROMPT, TaskInstance, family
from examples.flywheel.tenants import SimTenant
from examples.flywheel.users import Feedback, UserModel

TRAJECTORY_HEADER = "x-hermes-trajectory-id"


@dataclass(frozen=True, slots=True)
class ServedAttempt:
    """One attempt at a task through the gateway: the outcome and its trajectory id."""

    outcome: AgentOutcome
    trajectory_id: str


@dataclass(frozen=True, slots=True)
class GatewaySession:
    """One user's session: the task, the attempts (a retry adds one) and the feedback."""

    session_key: str
    user_ref: str
    task: TaskInstance
    attempts: tuple[ServedAttempt, ...]
    feedback: tuple[Feedback, ...]

    @property
    def correct(self) -> bool:
        """The first answer was right (usage task success)."""
        return self.attempts[0].outcome.correct


def _openai_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": dict(tool)}


class GatewayAgent:
    """The agent loop of one tenant over its gateway (one thread uses one agent).

    Parameters
    ----------
    base_url
        The gateway's ``/v1`` URL.
    token
        The gateway's bearer token (the agent's OpenAI ``api_key``).
    temperature
        The sampling temperature the agent asks for.
    """

    def __init__(self, base_url: str, token: str, temperature: float, *,
                 max_call_tokens: int = 80, max_answer_tokens: int = 32,
                 timeout_s: float = 120.0) -> None:
        import httpx
        import openai

        self.client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=2,
                                    timeout=timeout_s)
        self.feedback_http = httpx.Client(base_url=base_url,
                                          headers={"Authorization": f"Bearer {token}"},
                                          timeout=timeout_s)
        self.temperature = temperature
        self.max_call_tokens = max_call_tokens
        self.max_answer_tokens = max_answer_tokens

    def close(self) -> None:
        self.client.close()
        self.feedback_http.close()

    def _chat(self, messages: list[dict[str, Any]], tool: dict[str, Any], *, user: str,
              session: str, task_type: str, seed: int, required: bool,
              max_tokens: int) -> tuple[Any, str]:
        extra: dict[str, Any] = {"tool_choice": "required"} if required else {}
        raw = self.client.chat.completions.with_raw_response.create(
            model="hermes-fed", messages=messages,  # type: ignore[arg-type]
            tools=[_openai_tool(tool)],  # type: ignore[list-item]
            temperature=self.temperature, max_tokens=max_tokens, seed=seed, user=user,
            extra_headers={"X-Hermes-Session": session, "X-Hermes-Task-Type": task_type},
            **extra)
        return raw.parse().choices[0].message, raw.headers[TRAJECTORY_HEADER]

    def attempt(self, task: TaskInstance, user_text: str, user: str, session: str,
                seed: int) -> ServedAttempt:
        """Ask for the tool call, run the tool, ask for the final answer."""
        fam = family(task.task_type)
        tool = fam.tool_schema
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT},
                                          {"role": "user", "content": user_text}]
        first, tid = self._chat(messages, tool, user=user, session=session,
                                task_type=task.task_type, seed=seed, required=True,
                                max_tokens=self.max_call_tokens)
        calls = list(first.tool_calls or ())
        history = [{"role": m["role"], "content": m["content"]} for m in messages]
        if not calls:
            return ServedAttempt(finish_attempt(task, user_text, history, first.content or "",
                                              None, malformed=False, tool_error=False), tid)
        call = calls[0]
        try:
            arguments = json.loads(call.function.arguments)
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            return ServedAttempt(finish_attempt(task, user_text, history, first.content or "",
                                              None, malformed=True, tool_error=False), tid)
        result = fam.run(arguments) if call.function.name == fam.tool_name else json.dumps(
            {"error": f"unknown tool {call.function.name[:40]!r}"})
        tool_error = "error" in json.loads(result)
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call.id, "type": "function",
                 "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": result}]
        final, _ = self._chat(messages, tool, user=user, session=session,
                              task_type=task.task_type, seed=seed + 7919, required=False,
                              max_tokens=self.max_answer_tokens)
        history += [{"role": "assistant", "content": "", "tool_calls": [
            {"id": call.id, "name": call.function.name, "arguments": arguments}]},
            {"role": "tool", "tool_call_id": call.id, "name": call.function.name,
             "content": result}]
        return ServedAttempt(finish_attempt(task, user_text, history, final.content or "",
                                          ToolCall(call.function.name, arguments),
                                          malformed=False, tool_error=tool_error), tid)

    def send_feedback(self, trajectory_id: str, feedback: Feedback) -> None:
        """The user's reaction as ``/v1/feedback`` signals (a retry is sent as a request)."""
        signals: list[dict[str, Any]] = []
        if feedback.error:
            signals.append({"signal": "error", "reason": "wrong or broken answer"})
        if feedback.edit_ratio is not None:
            signals.append({"signal": "edited", "edit_ratio": feedback.edit_ratio})
        if feedback.accepted:
            signals.append({"signal": "accepted"})
        if feedback.continued:
            signals.append({"signal": "continued"})
        for body in signals:
            reply = self.feedback_http.post("/feedback", json={"trajectory_id": trajectory_id,
                                                               **body})
            if reply.status_code != 200:
                raise RuntimeError(f"/v1/feedback answered {reply.status_code}: {reply.text[:300]}")


def play_sessions(agent: GatewayAgent, tenant: SimTenant, n: int, seed: int,
                  user_model: UserModel | None = None) -> list[GatewaySession]:
    """``n`` sessions of ``tenant``'s users through ``agent``; at most one retry each.

    Tasks, users and reactions are drawn from ``seed`` (and the tenant), so the same seed
    asks the same questions of whatever version the gateway routes each user to.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    users = user_model or UserModel()
    rng = random.Random(f"gateway-sessions/{tenant.tenant_id}/{seed}")
    out: list[GatewaySession] = []
    for i, task in enumerate(tenant.draw_tasks(n, seed)):
        user_ref, text, _ = tenant.user_turn(task.request, rng)
        session = f"{tenant.tenant_id}-{seed}-{i}"
        call_seed = (seed * 100_003 + i) % (2**31)
        attempts = [agent.attempt(task, text, user_ref, session, call_seed)]
        feedback = [users.react(attempts[0].outcome.correct, broken(attempts[0].outcome), rng)]
        agent.send_feedback(attempts[0].trajectory_id, feedback[0])
        if feedback[0].retry:
            attempts.append(agent.attempt(task, text, user_ref, session, call_seed + 104_729))
            feedback.append(users.react(attempts[1].outcome.correct,
                                        broken(attempts[1].outcome), rng, may_retry=False))
            agent.send_feedback(attempts[1].trajectory_id, feedback[1])
        out.append(GatewaySession(session, user_ref, task, tuple(attempts), tuple(feedback)))
    return out


def session_counts(sessions: Sequence[GatewaySession]) -> dict[str, int]:
    """Counts of first attempts: correct, well-formed tool call, malformed, tool error."""
    return attempt_counts([s.attempts[0].outcome for s in sessions],
                          sum(len(s.attempts) > 1 for s in sessions))
