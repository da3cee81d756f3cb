"""Detection ahead of the write (the gateway's ``redact_ahead``): findings computed while
the model answers are reused by the store's gate, and never change what is stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hermes_fed.events.envelope import new_event
from hermes_fed.events.session import SessionStarted, TrajectoryRecorded
from hermes_fed.privacy import RedactionConfig, Redactor
from hermes_fed.privacy import redactor as redactor_module
from hermes_fed.store import open_store

from .conftest import SECRET

EMAIL = "zoe.mbeki@example.org"
CARD = "4242 4242 4242 4242"
ADDRESS = "221B Baker Street, London NW1 6XE"


def _messages(i: int) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are a support agent for Umbrella Ltd."},
        {"role": "user", "content": f"Order {4711 + i}: card {CARD}, write to {EMAIL}, "
                                    f"ship to {ADDRESS}; Umbrella Ltd knows me."},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "name": "lookup", "arguments": {"email": EMAIL, "order": 4711 + i}}]},
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps({"to": ADDRESS})},
    ]


def _batch(stream: str, i: int, deny: bool) -> list[Any]:
    started = new_event(SessionStarted(user_ref=f"u-{i}", model_version="m1"), stream_id=stream,
                        metadata={"deny_terms": ["Umbrella Ltd"]} if deny else {})
    messages = _messages(i)
    return [started, new_event(TrajectoryRecorded(
        trajectory_id=f"t-{i}", task=str(messages[1]["content"]), task_type="support",
        messages=messages, tools=[], final_response=f"Sent to {EMAIL}"), stream_id=stream)]


def _stored(tmp_path: Path, name: str, ahead: bool) -> tuple[list[Any], Redactor]:
    redactor = Redactor(RedactionConfig(), tenant_secret=SECRET)
    store = open_store(f"sqlite:///{tmp_path / name}.db", "tenant-a",
                       gate=redactor.redact_new_events)
    out = []
    for i, deny in enumerate((False, True, False)):
        stream = f"session-{i}"
        batch = _batch(stream, i, deny)
        keys = redactor.detect_ahead([e.data for e in batch]) if ahead else []
        store.append(batch)
        redactor.forget_ahead(keys)
        out.extend((e.type, e.data, e.metadata) for e in store.read_stream(stream))
    store.engine.dispose()
    return out, redactor


def test_what_is_stored_is_the_same_with_findings_detected_ahead(tmp_path: Path) -> None:
    # Execute: the same batches through two gates, one with the texts detected ahead
    plain, _ = _stored(tmp_path, "plain", ahead=False)
    ahead, redactor = _stored(tmp_path, "ahead", ahead=True)
    # Assert: byte-for-byte the same events, the ahead findings were used, none held
    assert ahead == plain
    assert redactor.ahead_hits >= 8
    assert redactor._ahead == {}
    stored = json.dumps([d for _, d, _ in ahead])
    for raw in (EMAIL, CARD, "Baker Street"):
        assert raw not in stored
    assert "Umbrella" not in json.dumps(ahead[3][1])  # session-1's trajectory: deny terms


def test_a_session_with_deny_terms_never_reuses_findings_found_without_them(
        tmp_path: Path) -> None:
    # Prepare: the texts detected ahead without the session's deny terms
    redactor = Redactor(RedactionConfig(), tenant_secret=SECRET)
    store = open_store(f"sqlite:///{tmp_path / 'deny'}.db", "tenant-a",
                       gate=redactor.redact_new_events)
    batch = _batch("session-d", 0, deny=True)
    redactor.detect_ahead([e.data for e in batch])
    # Execute
    store.append(batch)
    trajectory = store.read_stream("session-d")[1].data
    store.engine.dispose()
    # Assert: the deny term is redacted everywhere; no finding was reused in that session
    assert "Umbrella" not in json.dumps(trajectory)
    assert "<DENY_LIST_1>" in trajectory["messages"][0]["content"]
    assert redactor.ahead_hits == 0


def test_a_text_is_held_until_each_caller_forgets_it() -> None:
    redactor = Redactor(RedactionConfig(), tenant_secret=SECRET)
    text = f"write to {EMAIL} please"
    first = redactor.detect_ahead([text])
    second = redactor.detect_ahead({"content": text})
    assert first == second and len(first) == 1
    redactor.forget_ahead(first)
    assert redactor.redact_text(text, session_key="s") == "write to <EMAIL_ADDRESS_1> please"
    assert redactor.ahead_hits == 1
    redactor.forget_ahead(second)
    assert redactor._ahead == {}
    redactor.redact_text(text, session_key="s")
    assert redactor.ahead_hits == 1  # nothing held any more: detected again


def test_held_texts_are_bounded_and_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    redactor = Redactor(RedactionConfig(), tenant_secret=SECRET)
    monkeypatch.setattr(redactor_module, "_AHEAD_MAX", 2)
    keys = redactor.detect_ahead(["first text here", "second text here", "third text here"])
    assert [k[0] for k in keys] == ["first text here", "second text here"]
    # a caller that never forgets: its texts go once they are older than the TTL
    monkeypatch.setattr(redactor_module, "_AHEAD_TTL_S", 0.0)
    later = redactor.detect_ahead(["fourth text here"])
    assert set(redactor._ahead) == {later[0]}


def test_json_strings_are_detected_as_the_gate_walks_them() -> None:
    redactor = Redactor(RedactionConfig(), tenant_secret=SECRET)
    keys = redactor.detect_ahead({"content": json.dumps({"to": EMAIL, "note": "call me"})})
    assert sorted(k[0] for k in keys) == ["call me", EMAIL]
    assert redactor.redact_value(json.dumps({"to": EMAIL, "note": "call me"}),
                                 session_key="s") == json.dumps({"to": "<EMAIL_ADDRESS_1>",
                                                                 "note": "call me"})
    assert redactor.ahead_hits == 2
