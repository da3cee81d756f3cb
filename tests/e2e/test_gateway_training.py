"""The deploy stage of the loop, end to end: an agent on the official ``openai`` client runs
sessions through the node's gateway (in front of ``hermes-fed model serve``), users give
feedback, and the node trains a LoRA adapter on what the gateway captured (``node train``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import openai
import pytest

from hermes_fed.client.gateway import GatewayFeedback
from hermes_fed.serving.assembly import assemble_trajectories
from tests.integration.gateway.stack import BASE_MODEL, TOKEN, Node, model_serve

pytestmark = pytest.mark.slow
TOOLS = [{"type": "function", "function": {
    "name": "calculator", "description": "evaluates an arithmetic expression",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                   "required": ["expression"]}}}]
SYSTEM = "You are a helpful agent. Use the calculator for arithmetic."


def _agent_session(client: openai.OpenAI, user: str, a: int, b: int) -> tuple[str, str]:
    """One task: the model calls the calculator (tool_choice required), the agent runs the
    tool, the model answers. Returns (trajectory id, final answer)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM},
                                      {"role": "user", "content": f"What is {a} * {b}?"}]
    raw = client.chat.completions.with_raw_response.create(
        model="hermes-fed", user=user, messages=messages, tools=TOOLS,  # type: ignore[arg-type]
        tool_choice="required", temperature=0.7, max_tokens=40)
    tid = raw.headers["x-hermes-trajectory-id"]
    message = raw.parse().choices[0].message
    messages.append(message.model_dump())
    if not message.tool_calls:
        return tid, message.content or ""
    messages.append({"role": "tool", "tool_call_id": message.tool_calls[0].id,
                     "content": json.dumps({"result": a * b})})
    final = client.chat.completions.create(
        model="hermes-fed", user=user, messages=messages, tools=TOOLS,  # type: ignore[arg-type]
        temperature=0.7, max_tokens=24).choices[0].message
    return tid, final.content or ""


def test_sessions_through_the_gateway_train_an_adapter_on_the_node(tmp_path: Path) -> None:
    # Prepare: model serve + the node's gateway
    served = model_serve(tmp_path).start()
    node = Node(tmp_path / "node", served.url)
    gateway = node.gateway().start()
    rng = random.Random(7)
    ids: list[str] = []
    try:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0)
        with GatewayFeedback(gateway.url, TOKEN) as feedback:
            # Execute: 24 sessions of 12 users; most users accept the answer
            for i in range(24):
                tid, _answer = _agent_session(client, f"user-{i % 12}", rng.randint(2, 99),
                                              rng.randint(2, 99))
                ids.append(tid)
                if i % 4 == 3:
                    feedback.edited(tid, 0.6)
                else:
                    feedback.accepted(tid)
    finally:
        gateway.stop()
        served.stop()

    # Execute: the node trains on its log (the production CLI, few steps)
    trained = node.cli("train", "--base-model", str(BASE_MODEL), "--out", str(tmp_path / "runs"),
                       "--steps", "2", "--batch-size", "4", "--max-length", "256",
                       "--target-n", "20", "--heldout-fraction", "0.2", "--device", "cpu")

    # Assert: a completed run, on whole gateway trajectories
    assert trained.returncode == 0, trained.stdout + trained.stderr
    store = node.open_store()
    try:
        events = list(store.read())
    finally:
        store.close()
    types = [e.type for e in events]
    assert types.count("SessionStarted") >= 12
    assert "TrainingRunCompleted" in types, trained.stdout
    selected = [e for e in events if e.type == "TrainingDataSelected"][-1]
    chosen = {item["trajectory_id"] for item in selected.data["items"]}
    assert chosen and chosen <= set(ids)
    whole = assemble_trajectories(events)
    extended = {e.data["trajectory_id"] for e in events if e.type == "TrajectoryExtended"}
    assert chosen & extended, "no selected trajectory spans two calls"
    for tid in chosen & extended:
        roles = [m["role"] for m in whole[tid]["messages"]]
        assert roles == ["system", "user", "assistant", "tool", "assistant"]
