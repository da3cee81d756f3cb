"""The capture process: concurrent calls' captures on a second core, never one lost.

The gateway sends the captures of calls that overlap to its capture process (a child that
redacts and appends them with group commits) and answers each only once the child says it
is committed; a lone call is captured in the gateway itself. Tested with real processes: a
stub upstream that takes 20 ms to answer (so 8 agents' calls overlap), the gateway, its
child; the log read back and its chain verified.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from .stack import (
    TOKEN,
    Node,
    Server,
    capture_process_of,
    metric,
    stub_upstream,
    verified_trajectories,
)

pytestmark = pytest.mark.slow

AGENTS = 8


@pytest.fixture(scope="module")
def slow_stub(workdir: Path) -> Iterator[Server]:
    server = stub_upstream(workdir, delay_ms=20).start()
    yield server
    server.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead (its parent has not reaped it yet)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


class Agents:
    """``AGENTS`` threads calling the gateway until stopped, each call a new session with
    an e-mail address in it; what every answered call carried is kept."""

    def __init__(self, gateway: Server) -> None:
        self.gateway = gateway
        self.answered: list[tuple[str, str, str]] = []  # (trajectory id, user text, answer)
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(w,)) for w in range(AGENTS)]

    def __enter__(self) -> Agents:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def count(self) -> int:
        with self._lock:
            return len(self.answered)

    def wait_for(self, n: int, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count() < n and time.monotonic() < deadline and not self.failures:
            time.sleep(0.02)
        assert not self.failures, self.failures[:3]
        assert self.count() >= n, f"{self.count()} answers:\n{self.gateway.log()[-3000:]}"

    def _run(self, worker: int) -> None:
        client = openai.OpenAI(base_url=self.gateway.url + "/v1", api_key=TOKEN,
                               max_retries=0, timeout=30)
        i = 0
        while not self._stop.is_set():
            text = f"agent {worker} call {i}: write to jane.doe{worker}x{i}@example.com"
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model="hermes-fed", user=f"agent-{worker}",
                    messages=[{"role": "user", "content": text}])
            except openai.APIError as exc:
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                return
            answer = raw.parse().choices[0].message.content or ""
            with self._lock:
                self.answered.append((raw.headers["x-hermes-trajectory-id"], text, answer))
            i += 1


def _assert_all_captured_redacted(node: Node, answered: list[tuple[str, str, str]]) -> None:
    """Every answered call in the log, redacted, and in one trajectory only (a capture
    appended again after its process died is a duplicate, not a second copy)."""
    trajectories = verified_trajectories(node)
    missing = [a for a in answered if a[0] not in trajectories]
    assert not missing, f"{len(missing)} of {len(answered)} answered calls not in the log"
    copies = Counter(t["messages"][0]["content"] for t in trajectories.values())
    for tid, text, _answer in answered:
        stored = [m["content"] for m in trajectories[tid]["messages"]]
        redacted = text.split(": write to ")[0] + ": write to <EMAIL_ADDRESS_1>"
        assert stored == [redacted, "echo: " + redacted]
        assert copies[redacted] == 1, f"{redacted!r} stored {copies[redacted]} times"


def test_overlapping_calls_are_captured_by_the_capture_process(
        workdir: Path, slow_stub: Server) -> None:
    # Prepare
    node = Node(workdir / "process-node", slow_stub.url)
    gateway = node.gateway().start()
    try:
        child = capture_process_of(gateway)

        # Execute: 5 calls one at a time, then 8 agents at once, 240 answers
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0)
        for i in range(5):
            client.chat.completions.create(model="hermes-fed", user="lone",
                                           messages=[{"role": "user", "content": f"lone {i}"}])
        lone = httpx.get(gateway.url + "/metrics").text
        with Agents(gateway) as agents:
            agents.wait_for(240)
        metrics = httpx.get(gateway.url + "/metrics").text
    finally:
        gateway.stop()

    # Assert: a lone call's capture stays in the gateway (the pipe's round trip would
    # only add to its latency)
    assert metric(lone, "hermes_gateway_capture_inline_total") == 5
    assert metric(lone, "hermes_gateway_capture_process_calls_total") == 0

    # Assert: most captures went to the child, whose commits and redactions the gateway's
    # metrics count; every answered call is in the log, redacted, once; the child ended
    # with the gateway
    answered = len(agents.answered)
    by_process = metric(metrics, "hermes_gateway_capture_process_calls_total")
    inline = metric(metrics, "hermes_gateway_capture_inline_total")
    assert by_process >= answered / 2, (by_process, inline, answered)
    assert metric(metrics, "hermes_gateway_capture_batch_calls_sum") >= answered
    assert metric(metrics, "hermes_gateway_capture_process_up") == 1
    redacted = [line for line in metrics.splitlines()
                if line.startswith('hermes_node_redactions_total{entity_type="EMAIL_ADDRESS"}')]
    assert redacted and float(redacted[0].split()[1]) >= answered
    _assert_all_captured_redacted(node, agents.answered)
    assert _wait_gone(child), "the capture process outlived its gateway"
    assert "event=capture_process_stopped" in gateway.log()


def test_a_killed_capture_process_loses_no_call_and_is_replaced(
        workdir: Path, slow_stub: Server) -> None:
    # Prepare
    node = Node(workdir / "killed-child-node", slow_stub.url)
    gateway = node.gateway().start()
    try:
        first = capture_process_of(gateway)
        with Agents(gateway) as agents:
            agents.wait_for(60)

            # Execute: kill -9 the child while captures are in flight; the agents go on
            os.kill(first, signal.SIGKILL)
            second = first
            deadline = time.monotonic() + 120
            while second == first and time.monotonic() < deadline and not agents.failures:
                state = httpx.get(gateway.url + "/health").json()["capture_process"]
                if state["state"] == "ready":
                    second = int(state["pid"])
                time.sleep(0.05)
            at_restart = agents.count()
            agents.wait_for(at_restart + 60)
        metrics = httpx.get(gateway.url + "/metrics").text
    finally:
        gateway.stop()

    # Assert: no agent saw an error, a new child took over, every answered call is in
    # the log once (a capture the dead child had committed was not stored again)
    assert not agents.failures, agents.failures[:3]
    assert second != first, f"no new capture process:\n{gateway.log()[-3000:]}"
    assert metric(metrics, "hermes_gateway_capture_process_starts_total") == 2
    assert "event=capture_process_gone" in gateway.log()
    _assert_all_captured_redacted(node, agents.answered)


def test_kill_9_of_the_gateway_ends_its_capture_process_after_its_commits(
        workdir: Path, slow_stub: Server) -> None:
    # Prepare
    node = Node(workdir / "orphan-node", slow_stub.url)
    gateway = node.gateway().start()
    child = capture_process_of(gateway)
    with Agents(gateway) as agents:
        agents.wait_for(80)

        # Execute: kill -9 the gateway with calls in flight
        gateway.kill9()
    # (the agents' calls in flight fail: the gateway is gone)

    # Assert: the child ended on its own (the pipe closed), and every answer a client got
    # is in the log
    assert _wait_gone(child), "the capture process outlived a killed gateway"
    answered = list(agents.answered)
    _assert_all_captured_redacted(node, answered)
