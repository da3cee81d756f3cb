"""Two writers of one log: the gateway's own capture writer and its capture process.

A session's captures move between them with the gateway's load (a lone call is captured
inline, overlapping calls by the child). Each writer caches a session's placeholder
numbers; the one taking a session the other captured last must read them again, or a new
value gets a number the other writer already gave out, the append collides and the whole
group is redacted again. Real store, real spawned child, the real gate."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from hermes_fed.serving.assembly import SessionState, TurnDigester
from hermes_fed.serving.capture import CallContext, call_events
from hermes_fed.serving.conversion import from_openai_messages
from tenant_node.config import node_config_from_mapping
from tenant_node.gateway.capture import build_writer
from tenant_node.gateway.capture_process import CaptureProcess
from tenant_node.gateway.metrics import GatewayMetrics
from tenant_node.ingest.metrics import NodeMetrics

pytestmark = pytest.mark.slow

STREAM = "session-" + "5e" * 16
CALLS = 6


def _session_calls() -> list[tuple[list[dict[str, Any]], dict[str, Any]]]:
    """An agent's calls, each repeating the history and bringing a new e-mail address."""
    history: list[dict[str, Any]] = [{"role": "system", "content": "You file requests."}]
    calls = []
    for k in range(1, CALLS + 1):
        history = [*history, {"role": "user",
                              "content": f"Also copy person{k}.clerk@example.com on it."}]
        answer = {"role": "assistant", "content": f"Noted, request {k} filed."}
        calls.append((history, answer))
        history = [*history, answer]
    return calls


def test_a_session_moving_between_writers_keeps_its_numbers_without_collisions(
        tmp_path: Path) -> None:
    # Prepare: the gateway's writer and its capture process on one SQLite log
    config = node_config_from_mapping({"tenant_id": "acme", "token": "t" * 24,
                                       "data_dir": str(tmp_path)})
    metrics = GatewayMetrics()
    node_metrics = NodeMetrics(metrics.registry)
    store, writer = build_writer(config, metrics, node_metrics)
    writer.start()
    process = CaptureProcess(config, {"gateway": metrics, "node": node_metrics})
    digester = TurnDigester(b"s" * 32)
    state = SessionState(STREAM)
    context = CallContext(STREAM, "user-1", "base", None, None, "chat")
    inline_before = metrics.registry.get_sample_value("hermes_gateway_capture_inline_total")

    async def run() -> None:
        process.start(asyncio.get_running_loop())
        writer.attach(process)
        deadline = time.monotonic() + 120
        while not process.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert process.ready, "the capture process did not get ready in 120 s"
        for k, (messages, answer) in enumerate(_session_calls(), start=1):
            turns = from_openai_messages(messages)
            answer_turn = from_openai_messages([answer])[0]
            chains = digester.chain([*turns, answer_turn])
            reservation = state.reserve(chains[:-1], "user", 1000.0 + k, 60.0)
            events = call_events(context, reservation, turns, answer_turn, [], chains,
                                 digester.tools_key([]),
                                 state.branch_tools_key(reservation.trajectory_id))
            # Execute: odd calls lone (captured inline), even ones by the child
            await writer.append(events, alone=k % 2 == 1)
            state.commit(reservation, chains, digester.tools_key([]), 1000.0 + k)

    try:
        asyncio.run(run())
    finally:
        process.stop()
        writer.stop()
    stored = list(store.read_stream(STREAM))
    store.close()

    # Assert: both writers took their share (3 inline, 3 through the child) ...
    sample = metrics.registry.get_sample_value
    assert (sample("hermes_gateway_capture_inline_total") or 0) - (inline_before or 0) == 3
    assert sample("hermes_gateway_capture_process_calls_total") == 3
    # ... no append collided, and each new address got the next number (P1, P2)
    assert sample("hermes_node_placeholder_conflicts_total") == 0
    text = " ".join(str(e.data) for e in stored)
    assert "@example.com" not in text
    firsts = list(dict.fromkeys(int(n) for n in re.findall(r"<EMAIL_ADDRESS_(\d+)>", text)))
    assert firsts == list(range(1, CALLS + 1))
