"""Bad input and a misbehaving upstream: an OpenAI-style error each, nothing half-captured,
and the gateway keeps serving (real processes: stub upstream, gateway, the openai client)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from .stack import TOKEN, Node, Server

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def node(workdir: Path, stub: Server) -> Node:
    return Node(workdir / "bad-node", stub.url, upstream_timeout_s=1.5)


@pytest.fixture(scope="module")
def gateway(node: Node) -> Iterator[Server]:
    server = node.gateway().start()
    yield server
    server.stop()


@pytest.fixture
def client(gateway: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0)


def _head(node: Node) -> int:
    store = node.open_store()
    try:
        return store.head()
    finally:
        store.close()


def _events(node: Node, tid: str) -> list[Any]:
    store = node.open_store()
    try:
        return store.read_stream("session-" + tid.split("-")[1])
    finally:
        store.close()


def _still_serving(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="hermes-fed", messages=[{"role": "user", "content": "still there?"}])
    assert answer.choices[0].message.content == "echo: still there?"


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"{this is not json", 400, "invalid_json"),
    (b'{"model": "hermes-fed", "messages": [{"role": "wizard", "content": "x"}]}', 400,
     "invalid_value"),
    (b'{"model": "hermes-fed", "messages": [{"role": "user", "content": "x"}], "n": 3}', 400,
     "unsupported_value"),
    (b'{"model": "v9-unknown", "messages": [{"role": "user", "content": "x"}]}', 404,
     "model_not_found"),
])
def test_bad_requests_get_openai_errors_and_change_nothing(
        node: Node, gateway: Server, client: openai.OpenAI, body: bytes, status: int,
        code: str) -> None:
    # Prepare
    head = _head(node)

    # Execute
    response = httpx.post(gateway.url + "/v1/chat/completions", content=body,
                          headers={**AUTH, "content-type": "application/json"})

    # Assert
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and set(error) == {"message", "type", "param", "code"}
    assert _head(node) == head
    _still_serving(client)


def test_the_openai_client_sees_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="role"):
        client.chat.completions.create(model="hermes-fed",
                                       messages=[{"role": "robot", "content": "x"}])  # type: ignore[misc, list-item]
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="v9-unknown",
                                       messages=[{"role": "user", "content": "x"}])


def test_a_20_mb_body_is_refused_with_413(node: Node, gateway: Server, client: openai.OpenAI) -> None:
    head = _head(node)
    big = b'{"model": "hermes-fed", "messages": [{"role": "user", "content": "' \
        + b"x" * (20 * 1024 * 1024) + b'"}]}'
    response = httpx.post(gateway.url + "/v1/chat/completions", content=big,
                          headers={**AUTH, "content-type": "application/json"}, timeout=60)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert _head(node) == head
    _still_serving(client)


@pytest.mark.parametrize(("mode", "status", "code"), [
    ("MODE:slow", 504, "upstream_timeout"),
    ("MODE:500", 502, "upstream_error"),
    ("MODE:garbage", 502, "bad_upstream_response"),
])
def test_an_upstream_failure_is_an_error_signal_of_the_trajectory(
        node: Node, gateway: Server, client: openai.OpenAI, mode: str, status: int,
        code: str) -> None:
    # Prepare: an answered first call, then the user's next message fails upstream
    messages: list[dict[str, Any]] = [{"role": "user", "content": "hello"}]
    first = client.chat.completions.with_raw_response.create(
        model="hermes-fed", messages=messages, user=f"user-{code}")  # type: ignore[arg-type]
    tid = first.headers["x-hermes-trajectory-id"]
    messages += [first.parse().choices[0].message.model_dump(exclude_none=True),
                 {"role": "user", "content": f"{mode} now"}]

    # Execute
    response = httpx.post(gateway.url + "/v1/chat/completions", headers=AUTH, timeout=30,
                          json={"model": "hermes-fed", "messages": messages,
                                "user": f"user-{code}"})

    # Assert: an OpenAI error; the trajectory holds the first call and the error signal only
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    events = _events(node, tid)
    assert [e.type for e in events] == ["SessionStarted", "TrajectoryRecorded", "ErrorReported"]
    assert events[-1].data == {"trajectory_id": tid, "reason": f"upstream: {code}"}
    _still_serving(client)
    # the user tries again and it works: the trajectory is extended where it stood
    messages[-1] = {"role": "user", "content": "try again"}
    again = client.chat.completions.with_raw_response.create(
        model="hermes-fed", messages=messages, user=f"user-{code}")  # type: ignore[arg-type]
    assert again.headers["x-hermes-trajectory-id"] == tid
    assert [e.type for e in _events(node, tid)][-1] == "TrajectoryExtended"


@pytest.mark.parametrize("mode", ["MODE:badchunk", "MODE:drop"])
def test_a_broken_stream_ends_in_an_error_event_and_is_not_captured(
        node: Node, client: openai.OpenAI, mode: str) -> None:
    head = _head(node)
    with pytest.raises(openai.APIError):
        for _chunk in client.chat.completions.create(
                model="hermes-fed", messages=[{"role": "user", "content": mode}], stream=True):
            pass
    assert _head(node) == head
    _still_serving(client)


def test_a_client_that_leaves_a_stream_midway_leaves_nothing_captured(
        node: Node, gateway: Server, client: openai.OpenAI) -> None:
    # Prepare
    head = _head(node)
    body = {"model": "hermes-fed", "stream": True,
            "messages": [{"role": "user", "content": "MODE:slowstream"}]}

    # Execute: read two chunks, then hang up
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=AUTH,
                      timeout=30) as response:
        tid = response.headers["x-hermes-trajectory-id"]
        for i, _line in enumerate(response.iter_lines()):
            if i >= 2:
                break

    # Assert: the gateway counts the disconnect; nothing of that call is in the log
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        metrics = httpx.get(gateway.url + "/metrics").text
        if re.search(r"hermes_gateway_client_disconnects_total [1-9]", metrics):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the gateway never noticed the client leaving")
    assert _events(node, tid) == []
    assert _head(node) == head
    _still_serving(client)


def test_a_plan_whose_adapter_does_not_load_is_not_applied(
        node: Node, gateway: Server, client: openai.OpenAI, tmp_path: Path) -> None:
    # Prepare: adapter files on disk, but the upstream cannot load them
    fake = tmp_path / "adapter"
    fake.mkdir()
    (fake / "adapter_config.json").write_text("{}")
    (fake / "adapter_model.safetensors").write_bytes(b"x")
    result = node.cli("plan", "set", "--test", "ab-bad", "--arm", "a=base:0.5",
                      "--arm", "b=unloadable-v9:0.5", "--adapter", f"unloadable-v9={fake}")
    assert result.returncode == 0, result.stderr

    # Execute: wait for the gateway to look at the plan
    deadline = time.monotonic() + 30
    while not httpx.get(gateway.url + "/health").json().get("plan_pending"):
        assert time.monotonic() < deadline, "the gateway never saw the plan"
        time.sleep(0.05)

    # Assert: nobody goes to the unloadable version; the old routing serves on
    health = httpx.get(gateway.url + "/health").json()
    assert health["plan"] is None
    answer = client.chat.completions.with_raw_response.create(
        model="hermes-fed", messages=[{"role": "user", "content": "who serves me?"}], user="hal")  # type: ignore[arg-type]
    events = _events(node, answer.headers["x-hermes-trajectory-id"])
    assert events[0].data["model_version"] == "base"

    # Execute: a plan with a loadable version replaces it
    result = node.cli("plan", "set", "--test", "ab-good", "--arm", "a=base:0.5",
                      "--arm", "b=v5-ok:0.5", "--adapter", f"v5-ok={fake}")
    assert result.returncode == 0, result.stderr
    while httpx.get(gateway.url + "/health").json().get("plan") != "ab-good":
        assert time.monotonic() < deadline + 30, "the gateway never applied the plan"
        time.sleep(0.05)
    models = [m.id for m in client.models.list().data]
    assert models == ["hermes-fed", "base", "v5-ok"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="unloadable-v9",
                                       messages=[{"role": "user", "content": "x"}])
