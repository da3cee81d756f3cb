"""An answered call is never lost: ``kill -9`` of the gateway while clients call it.

Invariant 6 (acknowledged = durable) at the gateway: a client gets its answer only after the
call's capture is appended and committed, so every answer a client received is in the log
after the process is killed; the log's chain verifies; a restarted gateway rebuilds the
sessions from the log and extends them where they stood.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import openai
import pytest

from hermes_fed.serving.assembly import assemble_trajectories

from .stack import TOKEN, Node, Server

pytestmark = pytest.mark.slow


def test_kill_9_after_answers_loses_no_captured_call(workdir: Path, stub: Server) -> None:
    # Prepare: 12 client threads calling as fast as they can, each call a new session
    node = Node(workdir / "durable-node", stub.url)
    gateway = node.gateway().start()
    answered: list[tuple[str, str, str]] = []  # (trajectory id, user text, answer)
    lock = threading.Lock()
    enough = threading.Event()

    def agent(worker: int) -> None:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0,
                               timeout=10)
        for i in range(10_000):
            text = f"worker {worker} call {i}"
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model="hermes-fed", user=f"w{worker}",
                    messages=[{"role": "user", "content": text}])
            except openai.APIConnectionError:
                return  # the gateway is gone
            answer = raw.parse().choices[0].message.content or ""
            with lock:
                answered.append((raw.headers["x-hermes-trajectory-id"], text, answer))
                if len(answered) >= 150:
                    enough.set()

    threads = [threading.Thread(target=agent, args=(w,)) for w in range(12)]
    for t in threads:
        t.start()

    # Execute: kill -9 while calls are in flight
    assert enough.wait(120), f"too few answers before the kill:\n{gateway.log()[-2000:]}"
    gateway.kill9()
    for t in threads:
        t.join(30)
    with lock:
        received = list(answered)

    # Assert: every answer a client received is in the log, whole
    store = node.open_store()
    try:
        assert store.verify().ok
        trajectories = assemble_trajectories(store.read())
    finally:
        store.close()
    missing = [r for r in received if r[0] not in trajectories]
    assert not missing, f"{len(missing)} of {len(received)} answered calls lost"
    for tid, text, answer in received:
        assert trajectories[tid]["messages"] == [{"role": "user", "content": text},
                                                 {"role": "assistant", "content": answer}]


def test_a_restarted_gateway_extends_sessions_where_they_stood(workdir: Path, stub: Server) -> None:
    # Prepare: one answered call, then the gateway is killed
    node = Node(workdir / "restart-node", stub.url)
    gateway = node.gateway().start()
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "first question"}]
    first = client.chat.completions.with_raw_response.create(
        model="hermes-fed", user="restart", messages=messages)  # type: ignore[arg-type]
    tid = first.headers["x-hermes-trajectory-id"]
    messages += [first.parse().choices[0].message.model_dump(exclude_none=True),
                 {"role": "user", "content": "second question"}]
    gateway.kill9()

    # Execute: a new gateway process, the conversation goes on
    gateway = node.gateway().start()
    try:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0)
        second = client.chat.completions.with_raw_response.create(
            model="hermes-fed", user="restart", messages=messages)  # type: ignore[arg-type]
    finally:
        gateway.stop()

    # Assert: the same trajectory, extended by the new turns only
    assert second.headers["x-hermes-trajectory-id"] == tid
    store = node.open_store()
    try:
        events = store.read_stream("session-" + tid.split("-")[1])
    finally:
        store.close()
    assert [e.type for e in events] == ["SessionStarted", "TrajectoryRecorded", "TrajectoryExtended"]
    assert [m["content"] for m in events[2].data["messages"]] == ["second question",
                                                                  "echo: second question"]


def test_a_gateway_that_cannot_start_exits_1_and_says_why(workdir: Path, stub: Server) -> None:
    # Prepare: a node whose PostgreSQL log is unreachable (nothing listens there)
    node = Node(workdir / "unstartable", stub.url,
                store_url="postgresql+psycopg://nobody@127.0.0.1:1/none")

    # Execute: the start-up fails inside uvicorn's lifespan
    gateway = node.gateway()
    with pytest.raises(RuntimeError) as failed:
        gateway.start()

    # Assert: a failed command (a supervisor sees it), with the reason on stderr
    assert "['node', 'gateway'] exited 1" in str(failed.value)
    assert "hermes-fed: error: the gateway did not start" in gateway.log()
    assert "Connection refused" in gateway.log()
