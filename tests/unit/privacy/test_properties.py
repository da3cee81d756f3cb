"""Property tests (hypothesis): R1 no planted value survives anywhere in a redacted event
(free text, tool-call JSON arguments, tool-result JSON strings, metadata); R2 idempotence;
R3 JSON strings stay JSON. Planted values come from the bench corpus' generators, which
produce valid values of every type (Luhn, mod-97, base58check, well-formed JWTs...)."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.redaction.corpus import CONTEXT_GENERATORS, GENERATORS, NEGATIVES
from hermes_fed.privacy import RedactionConfig, Redactor

from .conftest import SECRET

_REDACTOR: Redactor | None = None


def _redactor() -> Redactor:
    global _REDACTOR
    if _REDACTOR is None:
        _REDACTOR = Redactor(RedactionConfig(), tenant_secret=SECRET)
    return _REDACTOR


# Values that are PII on their own (context-free types) and the contexts that make the
# others PII (a value plus the text that announces it).
CONTEXTS = {
    "URL_CREDENTIAL": "https://{}@db.example.com:5432/x",
    "URL_CREDENTIAL|token": "https://api.example.com:8443/v1?token={}&a=1",
    "AWS_SECRET_KEY": "aws_secret_access_key = {}",
    "BEARER_TOKEN": "Authorization: Bearer {}",
    "PRIVATE_KEY": "{}",
    "PASSWORD": "password: {}",
    "SECRET": "client_secret: {}",
}
KINDS = sorted(GENERATORS) + sorted(CONTEXTS)
FILLER = st.sampled_from(["hello", "the", "deploy", "failed at", "see", "ok,", "(retry)",
                          "\n", "->", "user said", "line 42"])
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def planted(draw: st.DrawFn) -> tuple[str, str]:
    """(value, its text in context)."""
    kind = draw(st.sampled_from(KINDS))
    rng = random.Random(draw(st.integers(0, 2**32)))
    if kind in CONTEXTS:
        value = CONTEXT_GENERATORS[kind](rng)
        return value, CONTEXTS[kind].format(value)
    value = GENERATORS[kind](rng)
    return value, value


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A text with 1-4 planted values among filler words and hard negatives."""
    parts: list[str] = []
    values: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        parts.extend(draw(st.lists(FILLER, max_size=3)))
        if draw(st.booleans()):
            parts.append(NEGATIVES[draw(st.sampled_from(sorted(NEGATIVES)))](
                random.Random(draw(st.integers(0, 999)))))
        value, in_context = draw(planted())
        parts.append(in_context)
        values.append(value)
    return " ".join(parts), values


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


@SETTINGS
@given(doc=documents())
def test_r1_no_planted_value_survives_in_text(doc: tuple[str, list[str]]) -> None:
    text, values = doc
    redacted = _redactor().redact_text(text, session_key="prop-text")
    for value in values:
        assert value not in redacted


@SETTINGS
@given(doc=documents(), key=st.sampled_from(["body", "note", "query", "content", "x"]),
       meta=documents())
def test_r1_no_planted_value_survives_anywhere_in_an_event(
    doc: tuple[str, list[str]], key: str, meta: tuple[str, list[str]]
) -> None:
    # Prepare: the same text in a turn, in tool-call arguments (nested), in a JSON tool
    # result and (other values) in metadata. Context-dependent values (a bare 40-char AWS
    # secret) are PII only with their context, so the text travels whole.
    text, values = doc
    data = {
        "trajectory_id": "t-p",
        "messages": [
            {"role": "user", "content": text},
            {"role": "assistant", "content": "",
             "tool_calls": [{"id": "c1", "name": "tool",
                             "arguments": {key: text, "list": [text, {"n": text}]}}]},
            {"role": "tool", "tool_call_id": "c1", "content": json.dumps({key: [text]})},
        ],
    }
    # Execute
    new_data, new_meta = _redactor().redact_event(
        "TrajectoryRecorded", data, {"comment": meta[0]}, session_key="prop-event")
    # Assert
    everything = "\n".join(_strings(new_data) + _strings(new_meta))
    for value in values + meta[1]:
        assert value not in everything
        assert json.dumps(value)[1:-1] not in everything
    json.loads(new_data["messages"][2]["content"])  # R3


@SETTINGS
@given(doc=documents())
def test_r2_redaction_is_idempotent(doc: tuple[str, list[str]]) -> None:
    r = _redactor()
    once = r.redact_text(doc[0], session_key="prop-idem")
    assert r.redact_text(once, session_key="prop-idem") == once
    event = {"messages": [{"role": "user", "content": doc[0]}], "args": {"v": doc[1]}}
    data, _ = r.redact_event("TrajectoryRecorded", event, {}, session_key="prop-idem")
    again, _ = r.redact_event("TrajectoryRecorded", data, {}, session_key="prop-idem")
    assert again == data


@SETTINGS
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_crashes_and_is_idempotent(text: str) -> None:
    r = _redactor()
    once = r.redact_text(text, session_key="prop-any")
    assert r.redact_text(once, session_key="prop-any") == once
