"""The official ``openai`` client (sync, async, streaming, tools) against the gateway in front
of ``hermes-fed model serve`` on the packaged 1m base and a LoRA adapter (real processes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from hermes_fed.serving.assembly import assemble_trajectories
from hermes_fed.serving.plan import PlanArm, TrafficPlan
from hermes_fed.store import Keyring

from .stack import TOKEN, Node, Server, make_adapter

pytestmark = pytest.mark.slow
VERSION = "v2-test"
PLAN = TrafficPlan("ab-ms", (PlanArm("control", "base", 0.5), PlanArm("treatment", VERSION, 0.5)),
                   "control")
TOOLS = [{"type": "function", "function": {
    "name": "calculator", "description": "evaluates arithmetic",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}}]
SYSTEM = {"role": "system", "content": "You are a helpful agent. Use the calculator."}


@pytest.fixture(scope="module")
def node(workdir: Path, served_model: Server) -> Node:
    node = Node(workdir / "ms-node", served_model.url)
    adapter = make_adapter(workdir / "trained-adapter", seed=3)
    arms = [f"--arm={a.name}={a.version}:{a.share}" for a in PLAN.arms]
    result = node.cli("plan", "set", "--test", PLAN.test_id, *arms,
                      "--adapter", f"{VERSION}={adapter}")
    assert result.returncode == 0, result.stderr
    return node


@pytest.fixture(scope="module")
def gateway(node: Node) -> Iterator[Server]:
    server = node.gateway().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def secret(node: Node, gateway: Server) -> bytes:
    return Keyring.from_file(node.workdir / "var" / "keyring.json").hmac_secret


def _session(node: Node, tid: str) -> list[Any]:
    store = node.open_store()
    try:
        return store.read_stream("session-" + tid.split("-")[1])
    finally:
        store.close()


def test_the_gateway_loaded_the_adapter_upstream_under_its_version(
        gateway: Server, served_model: Server) -> None:
    upstream = httpx.get(served_model.url + "/v1/models").json()["data"]
    assert [m["id"] for m in upstream] == ["base", VERSION]
    assert upstream[1]["root"].endswith(f"/var/adapters/{VERSION}")
    assert httpx.get(gateway.url + "/health").json()["plan"] == PLAN.test_id


def test_sync_calls_with_tools_route_each_user_to_its_keyed_arm(
        node: Node, gateway: Server, secret: bytes) -> None:
    # Prepare
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0)
    users = [f"user-{i}" for i in range(12)]
    expected = {u: PLAN.route(secret, u).arm for u in users}  # the node's keyed hash
    assert {a.name for a in expected.values()} == {"control", "treatment"}

    # Execute: two separate conversations per user
    routed: dict[str, set[str]] = {}
    for round_ in range(2):
        for user in users:
            raw = client.chat.completions.with_raw_response.create(
                model="hermes-fed", user=user, tools=TOOLS, temperature=0.7, seed=round_,  # type: ignore[arg-type]
                max_tokens=48, messages=[SYSTEM, {"role": "user", "content": f"{round_}: 12*7?"}])
            answer = raw.parse()
            assert answer.model == "hermes-fed"
            assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")
            started = _session(node, raw.headers["x-hermes-trajectory-id"])[0]
            routed.setdefault(user, set()).add(started.data["model_version"])
            assert started.data["variant"] == expected[user].name
            assert started.data["ab_test_id"] == PLAN.test_id

    # Assert: sticky, and the arm of the keyed hash
    assert routed == {u: {expected[u].version} for u in users}


def test_a_tool_call_and_its_result_extend_the_trajectory(node: Node, gateway: Server) -> None:
    # Prepare
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0)
    messages: list[dict[str, Any]] = [SYSTEM, {"role": "user", "content": "What is 6*7?"}]

    # Execute: the named tool_choice forces a call's opening; the agent answers the call
    first = client.chat.completions.with_raw_response.create(
        model="hermes-fed", user="tool-user", messages=messages, tools=TOOLS,  # type: ignore[arg-type]
        tool_choice="required", temperature=0.0, max_tokens=48)
    message = first.parse().choices[0].message
    messages.append(message.model_dump())
    if message.tool_calls:
        messages.append({"role": "tool", "tool_call_id": message.tool_calls[0].id,
                         "content": json.dumps({"result": 42})})
    else:  # the tiny model wrote a call that does not parse: it is text, the user goes on
        messages.append({"role": "user", "content": "and?"})
    second = client.chat.completions.with_raw_response.create(
        model="hermes-fed", user="tool-user", messages=messages, tools=TOOLS,  # type: ignore[arg-type]
        temperature=0.0, max_tokens=32)
    final = second.parse().choices[0].message

    # Assert
    tid = first.headers["x-hermes-trajectory-id"]
    assert second.headers["x-hermes-trajectory-id"] == tid
    events = _session(node, tid)
    assert [e.type for e in events] == ["SessionStarted", "TrajectoryRecorded", "TrajectoryExtended"]
    whole = assemble_trajectories(events)[tid]
    assert len(whole["messages"]) == len(messages) + 1
    assert [m["role"] for m in whole["messages"]] == [m["role"] for m in messages] + ["assistant"]
    if message.tool_calls:
        call = whole["messages"][2]["tool_calls"][0]
        assert (call["id"], call["name"]) == (message.tool_calls[0].id, "calculator")
    assert whole["final_response"] == final.content or final.tool_calls


def test_async_client_concurrent_calls(node: Node, gateway: Server) -> None:
    async def run() -> list[str]:
        client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0)
        async with client:
            calls = [client.chat.completions.with_raw_response.create(
                model="hermes-fed", user=f"async-{i}", max_tokens=16, temperature=0.7, seed=i,
                messages=[{"role": "user", "content": f"count to {i}"}]) for i in range(6)]
            answers = await asyncio.gather(*calls)
        return [a.headers["x-hermes-trajectory-id"] for a in answers]

    ids = asyncio.run(run())
    assert len(set(ids)) == 6
    for tid in ids:
        assert [e.type for e in _session(node, tid)] == ["SessionStarted", "TrajectoryRecorded"]


def test_streaming_relays_chunks_and_the_usage_chunk(node: Node, gateway: Server) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0)
    with client.chat.completions.with_streaming_response.create(
            model="hermes-fed", user="streamer", stream=True, temperature=0.7, seed=5,  # type: ignore[arg-type]
            max_tokens=24, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "say something"}]) as response:
        tid = response.headers["x-hermes-trajectory-id"]
        chunks = list(response.parse())
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    assert chunks[-2].choices[0].finish_reason in ("stop", "length", "tool_calls")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    recorded = assemble_trajectories(_session(node, tid))[tid]["messages"][-1]
    assert recorded["role"] == "assistant"
    if not recorded.get("tool_calls"):
        # the model's text, through the redactor (a digit run may have become a placeholder)
        assert len(recorded["content"]) > 0 or text == ""
