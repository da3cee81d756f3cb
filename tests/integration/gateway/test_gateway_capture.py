"""What the gateway captures equals what the client saw, after redaction (real processes).

The official ``openai`` client talks to ``hermes-fed node gateway`` in front of a stub
upstream that answers at once and deterministically, so every captured turn can be
compared exactly with the turn the client saw, PII replaced by its placeholder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from hermes_fed.serving.assembly import assemble_trajectories
from hermes_fed.serving.conversion import from_openai_messages

from .stack import TOKEN, Node, Server

pytestmark = pytest.mark.slow

EMAIL, CARD, KEY = "ann.lee@example.com", "4111 1111 1111 1111", "AKIAIOSFODNN7EXAMPLE"
PLACEHOLDER = {EMAIL: "<EMAIL_ADDRESS_1>", CARD: "<CREDIT_CARD_1>", KEY: "<AWS_ACCESS_KEY_ID_1>"}
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "find an order",
                                           "parameters": {"type": "object", "properties": {
                                               "query": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def node(workdir: Path, stub: Server) -> Node:
    return Node(workdir / "capture-node", stub.url, retry_window_s=60.0)


@pytest.fixture(scope="module")
def gateway(node: Node) -> Iterator[Server]:
    server = node.gateway().start()
    yield server
    server.stop()


@pytest.fixture
def client(gateway: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0)


def _redacted(value: Any) -> Any:
    """The client's view with each planted value replaced by its placeholder (computed
    from the plant list, not by the redactor)."""
    if isinstance(value, str):
        for raw, placeholder in PLACEHOLDER.items():
            value = value.replace(raw, placeholder)
        return value
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def _stream_events(node: Node, stream_id: str) -> list[Any]:
    store = node.open_store()
    try:
        return store.read_stream(stream_id)
    finally:
        store.close()


def test_an_agent_session_is_captured_as_one_trajectory_storing_only_new_turns(
        node: Node, client: openai.OpenAI) -> None:
    # Prepare: a tool-using agent loop; each call repeats the history
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": f"Where is my order? Mail {EMAIL}, card {CARD}"}]
    seen: list[dict[str, Any]] = []
    ids = []

    # Execute
    raw = client.chat.completions.with_raw_response.create(
        model="hermes-fed", messages=messages, tools=TOOLS, user="alice")  # type: ignore[arg-type]
    first = raw.parse().choices[0].message
    ids.append(raw.headers["x-hermes-trajectory-id"])
    messages.append(first.model_dump())  # sent back with refusal/audio/... as agents do
    seen.append(first.model_dump(exclude_none=True))
    call = first.tool_calls[0]  # type: ignore[index]
    messages.append({"role": "tool", "tool_call_id": call.id,
                     "content": json.dumps({"status": "shipped", "key": KEY})})
    raw = client.chat.completions.with_raw_response.create(
        model="hermes-fed", messages=messages, tools=TOOLS, user="alice")  # type: ignore[arg-type]
    second = raw.parse().choices[0].message
    ids.append(raw.headers["x-hermes-trajectory-id"])
    messages.append(second.model_dump(exclude_none=True))
    messages.append({"role": "user", "content": f"thanks, resend to {EMAIL}"})
    raw = client.chat.completions.with_raw_response.create(
        model="hermes-fed", messages=messages, tools=TOOLS, user="alice")  # type: ignore[arg-type]
    third = raw.parse().choices[0].message
    ids.append(raw.headers["x-hermes-trajectory-id"])
    messages.append(third.model_dump(exclude_none=True))

    # Assert: one trajectory; the fold equals the client's conversation, redacted
    assert len(set(ids)) == 1
    tid = ids[0]
    stream_id = "session-" + tid.split("-")[1]
    events = _stream_events(node, stream_id)
    assert [e.type for e in events] == ["SessionStarted", "TrajectoryRecorded",
                                        "TrajectoryExtended", "TrajectoryExtended"]
    assert [len(e.data["messages"]) for e in events[1:]] == [3, 2, 2]
    whole = assemble_trajectories(events)[tid]
    expected = _redacted(from_openai_messages(messages))
    assert whole["messages"] == expected
    assert whole["final_response"] == _redacted(third.content or "")
    assert whole["tools"] == [TOOLS[0]["function"]]
    assert events[0].data["user_ref"] == "alice"
    assert events[0].data["model_version"] == "base"  # no plan: the base model


def test_raw_pii_never_reaches_the_database_files(node: Node, client: openai.OpenAI) -> None:
    # Prepare / Execute
    client.chat.completions.create(model="hermes-fed", user="bob", messages=[
        {"role": "user", "content": f"card {CARD} and key {KEY} and {EMAIL}"}])

    # Assert: neither the database nor its WAL holds a planted value
    var = node.workdir / "var"
    blobs = b"".join(p.read_bytes() for p in var.iterdir() if p.name.startswith("events.db"))
    for raw in PLACEHOLDER:
        assert raw.encode() not in blobs
    assert b"4111111111111111" not in blobs


def test_a_stream_is_captured_as_the_client_saw_it(node: Node, client: openai.OpenAI,
                                                    gateway: Server) -> None:
    # Prepare
    messages = [{"role": "user", "content": f"stream to {EMAIL} please"}]

    # Execute
    with client.chat.completions.with_streaming_response.create(
            model="hermes-fed", messages=messages, stream=True, user="carol",  # type: ignore[arg-type]
            stream_options={"include_usage": True}) as response:
        tid = response.headers["x-hermes-trajectory-id"]
        chunks = list(response.parse())

    # Assert
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"echo: stream to {EMAIL} please"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 12
    assert all(c.model == "hermes-fed" for c in chunks)  # the version is not shown
    whole = assemble_trajectories(_stream_events(node, "session-" + tid.split("-")[1]))[tid]
    assert whole["messages"][-1] == {"role": "assistant", "content": _redacted(text)}


def test_streamed_tool_calls_are_captured(node: Node, client: openai.OpenAI) -> None:
    stream = client.chat.completions.with_streaming_response.create(
        model="hermes-fed", messages=[{"role": "user", "content": "find order 7"}],
        tools=TOOLS, stream=True, user="dave")  # type: ignore[arg-type]
    with stream as response:
        tid = response.headers["x-hermes-trajectory-id"]
        chunks = list(response.parse())
    pieces = [c.choices[0].delta.tool_calls[0] for c in chunks
              if c.choices and c.choices[0].delta.tool_calls]
    arguments = "".join(p.function.arguments or "" for p in pieces)  # type: ignore[union-attr]
    whole = assemble_trajectories(_stream_events(node, "session-" + tid.split("-")[1]))[tid]
    call = whole["messages"][-1]["tool_calls"][0]
    assert (call["id"], call["name"]) == (pieces[0].id, "lookup")
    assert call["arguments"] == json.loads(arguments) == {"query": "find order 7"}


def test_a_resent_message_is_recorded_as_a_retry(node: Node, client: openai.OpenAI) -> None:
    # Prepare
    messages = [{"role": "user", "content": "write me a limerick"}]
    first = client.chat.completions.with_raw_response.create(
        model="hermes-fed", messages=messages, user="erin")  # type: ignore[arg-type]

    # Execute: the same request again (the user asked again)
    second = client.chat.completions.with_raw_response.create(
        model="hermes-fed", messages=messages, user="erin")  # type: ignore[arg-type]

    # Assert
    t1, t2 = first.headers["x-hermes-trajectory-id"], second.headers["x-hermes-trajectory-id"]
    assert t1 != t2
    events = _stream_events(node, "session-" + t1.split("-")[1])
    retries = [e.data["trajectory_id"] for e in events if e.type == "RetryRequested"]
    assert retries == [t1]


def test_an_anonymous_repeat_is_not_a_retry(node: Node, client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "a common opening line"}]
    first = client.chat.completions.with_raw_response.create(model="hermes-fed", messages=messages)  # type: ignore[arg-type]
    client.chat.completions.create(model="hermes-fed", messages=messages)  # type: ignore[arg-type]
    events = _stream_events(node, "session-" + first.headers["x-hermes-trajectory-id"].split("-")[1])
    assert [e.type for e in events].count("RetryRequested") == 0
    assert events[0].data["user_ref"].startswith("anon-")


@pytest.mark.parametrize(("signal", "extra", "event_type"), [
    ("accepted", {}, "OutputAccepted"), ("retried", {}, "RetryRequested"),
    ("edited", {"edit_ratio": 0.25}, "OutputEdited"), ("continued", {}, "SessionContinued"),
    ("error", {"reason": "wrong answer"}, "ErrorReported")])
def test_feedback_appends_the_signals_event(node: Node, client: openai.OpenAI, gateway: Server,
                                            signal: str, extra: dict[str, Any],
                                            event_type: str) -> None:
    # Prepare
    raw = client.chat.completions.with_raw_response.create(
        model="hermes-fed", messages=[{"role": "user", "content": f"feedback {signal}"}],
        user="frank")  # type: ignore[arg-type]
    tid = raw.headers["x-hermes-trajectory-id"]

    # Execute
    from hermes_fed.client.gateway import GatewayFeedback

    with GatewayFeedback(gateway.url, TOKEN) as feedback:
        answer = feedback.send(tid, signal, **extra)

    # Assert
    assert answer["event_type"] == event_type
    events = _stream_events(node, "session-" + tid.split("-")[1])
    last = events[-1]
    assert (last.type, last.data["trajectory_id"]) == (event_type, tid)
    if "edit_ratio" in extra:
        assert last.data["edit_ratio"] == 0.25


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"trajectory_id": "t-" + "0" * 32 + "-" + "0" * 12, "signal": "accepted"}, 404,
     "trajectory_not_found"),
    ({"trajectory_id": "nope", "signal": "accepted"}, 400, "invalid_value"),
    ({"signal": "accepted"}, 400, "invalid_value"),
    ({"trajectory_id": "t-" + "0" * 32 + "-" + "0" * 12, "signal": "loved"}, 400, "invalid_value"),
    ({"trajectory_id": "t-" + "0" * 32 + "-" + "0" * 12, "signal": "edited", "edit_ratio": 1.5},
     400, "invalid_value"),
    ({"trajectory_id": "t-" + "0" * 32 + "-" + "0" * 12, "signal": "accepted", "x": 1}, 400,
     "invalid_body"),
])
def test_bad_feedback_gets_an_openai_error(gateway: Server, body: dict[str, Any], status: int,
                                           code: str) -> None:
    response = httpx.post(gateway.url + "/v1/feedback", json=body,
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_a_wrong_token_is_refused(gateway: Server) -> None:
    bad = openai.OpenAI(base_url=gateway.url + "/v1", api_key="wrong-token-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="hermes-fed",
                                    messages=[{"role": "user", "content": "hi"}])
    assert httpx.get(gateway.url + "/health").status_code == 200  # no token needed


def test_metrics_count_requests_arms_and_captures(gateway: Server, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="hermes-fed", messages=[{"role": "user", "content": "m"}])
    text = httpx.get(gateway.url + "/metrics").text
    assert re.search(r'hermes_gateway_requests_total\{endpoint="chat",status="200"\} [1-9]', text)
    assert re.search(r'hermes_gateway_arm_requests_total\{arm="base",test_id="none",'
                     r'version="base"\} [1-9]', text)
    assert re.search(r"hermes_gateway_capture_lag_seconds_count [1-9]", text)
    assert re.search(r"hermes_gateway_requests_without_user_total [1-9]", text)
    assert re.search(r'hermes_node_redactions_total\{entity_type="EMAIL_ADDRESS"\} [1-9]', text)


def test_what_start_up_built_is_frozen_out_of_the_collectors_passes(gateway: Server) -> None:
    # The recognizers, presidio and the name lexicon: a full collection's worth of objects
    # (~170,000) that no pass need walk again
    text = httpx.get(gateway.url + "/metrics").text
    match = re.search(r"^hermes_gateway_gc_frozen_objects (\S+)$", text, re.MULTILINE)
    assert match is not None and float(match.group(1)) > 50_000
