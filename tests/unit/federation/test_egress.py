"""The egress guard (invariant 8, E1-E6 in tenant_node/flower/egress.py)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.task_identity import TaskIdentity
from hypothesis import given
from hypothesis import strategies as st

from coordinator.deploy.wire_capture import find_canaries
from hermes_fed.errors import EgressError
from tenant_node.flower.egress import (
    Cell,
    EgressPolicy,
    ReplyPayload,
    build_reply,
    check_content,
    egress_mod,
)

CANARIES = ["alice.canary@example.com", "4111 1111 1111 1111", "t-canary-trajectory-0042",
            "the zebra quartz canary sentence"]
POLICY = EgressPolicy(k_min=20)
LORA = {"base_model.model.layers.0.self_attn.q_proj.lora_A.weight": np.ones((4, 8), np.float32),
        "base_model.model.layers.0.self_attn.q_proj.lora_B.weight": np.zeros((8, 4), np.float32)}


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    # Flower stamps messages with the current task's ids; a unit test has no task.
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 1


def _request() -> Message:
    return Message(RecordDict(), dst_node_id=1, message_type="train")


def _context() -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})


def wire_bytes(message: Message) -> bytes:
    """The bytes Flower pushes for a message: every nested object, deflated."""
    return b"".join(obj.deflate() for obj in get_all_nested_objects(message).values())


def test_train_reply_carries_adapter_counts_and_versions() -> None:
    # Prepare
    payload = ReplyPayload(adapter=LORA, num_examples=25, metrics={"train-loss": 1.5},
                           versions={"parent-version": "v0-abc123"})
    # Execute
    reply = build_reply(_request(), payload, POLICY)
    # Assert
    content = reply.content
    assert set(content) == {"adapter", "metrics", "versions"}
    assert set(content["adapter"]) == set(LORA)
    assert content["metrics"]["num-examples"] == 25
    assert content["metrics"]["suppressed-cells"] == 0
    assert content["versions"]["parent-version"] == "v0-abc123"


def test_e5_small_training_set_withholds_adapter_and_its_metrics() -> None:
    payload = ReplyPayload(adapter=LORA, num_examples=19, metrics={"train-loss": 2.5})
    reply = build_reply(_request(), payload, POLICY)
    assert "adapter" not in reply.content
    assert dict(reply.content["metrics"]) == {"suppressed-cells": 1}


@pytest.mark.parametrize(
    ("n", "kept"),
    [(0, True), (1, False), (19, False), (20, True), (500, True)],
)
def test_e5_cells_below_k_min_are_suppressed(n: int, kept: bool) -> None:
    payload = ReplyPayload(cells=[Cell("arm.control", n, 0.5 * n, 0.25 * n)])
    metrics = build_reply(_request(), payload, POLICY).content["metrics"]
    assert ("arm.control.n" in metrics) is kept
    assert metrics["suppressed-cells"] == (0 if kept else 1)


@pytest.mark.parametrize(
    "payload",
    [
        ReplyPayload(versions={"parent-version": CANARIES[0]}),  # E4: '@'
        ReplyPayload(versions={"parent-version": CANARIES[3]}),  # E4: spaces
        ReplyPayload(metrics={"alice.canary@example.com": 1.0}),  # E3: name
        ReplyPayload(metrics={"loss": float("nan")}),  # E3: not finite
        ReplyPayload(metrics={"loss": "text"}),  # type: ignore[dict-item]  # E3: text
        ReplyPayload(adapter={"trajectory t-canary": np.ones(2, np.float32)}),  # E2: name
        ReplyPayload(adapter={"x.lora_A.weight": np.frombuffer(b"secret!!", np.uint8)}),  # E2
        ReplyPayload(adapter={"x.lora_A.weight": np.array([np.inf], np.float32)}),  # E2
        ReplyPayload(metrics={"num-examples": 3.0}),  # a count disguised as a metric
    ],
)
def test_e1_to_e4_disallowed_payloads_raise(payload: ReplyPayload) -> None:
    with pytest.raises(EgressError) as info:
        build_reply(_request(), payload, POLICY)
    assert not find_canaries(str(info.value).encode(), CANARIES)


def test_planted_leak_is_seen_on_the_wire_and_refused_by_the_guard() -> None:
    # Prepare: a reply built *around* the guard, with a canary in a ConfigRecord
    leaky = Message(RecordDict({"metrics": MetricRecord({"n": 30}),
                                "notes": ConfigRecord({"text": CANARIES[3]})}),
                    reply_to=_request())
    clean = build_reply(_request(), ReplyPayload(adapter=LORA, num_examples=30), POLICY)
    # Execute
    leaky_found = find_canaries(wire_bytes(leaky), CANARIES)
    clean_found = find_canaries(wire_bytes(clean), CANARIES)
    # Assert: the scanner sees the plant (so a clean scan means something) ...
    assert leaky_found == [CANARIES[3]]
    assert clean_found == []
    assert b"lora_A" in wire_bytes(clean)
    # ... and the guard refuses it
    with pytest.raises(EgressError):
        check_content(leaky.content, POLICY)


def test_e1_mod_refuses_a_handler_that_bypasses_build_reply() -> None:
    mod = egress_mod(POLICY)

    def leaky_handler(message: Message, context: Context) -> Message:
        return Message(RecordDict({"versions": ConfigRecord({"user-ref": CANARIES[0]})}),
                       reply_to=message)

    with pytest.raises(EgressError) as info:
        mod(_request(), _context(), leaky_handler)  # type: ignore[operator]
    assert not find_canaries(str(info.value).encode(), CANARIES)


def test_e6_handler_exception_leaves_as_type_name_only() -> None:
    mod = egress_mod(POLICY)

    def failing_handler(message: Message, context: Context) -> Message:
        raise ValueError(f"could not parse {CANARIES[2]} for {CANARIES[0]}")

    with pytest.raises(EgressError) as info:
        mod(_request(), _context(), failing_handler)  # type: ignore[operator]
    assert str(info.value) == "train failed: reason=internal (ValueError)"
    assert info.value.__cause__ is None


def test_mod_passes_a_guarded_reply_through() -> None:
    mod = egress_mod(POLICY)
    reply = build_reply(_request(), ReplyPayload(adapter=LORA, num_examples=40), POLICY)
    assert mod(_request(), _context(), lambda m, c: reply) is reply  # type: ignore[operator]


@given(st.text(min_size=1, max_size=60))
def test_property_text_never_passes_as_a_version_unless_it_is_a_token(text: str) -> None:
    token_like = text[0].isascii() and text[0].isalnum() and all(
        c.isascii() and (c.isalnum() or c in "._:+-") for c in text)
    try:
        build_reply(_request(), ReplyPayload(versions={"parent-version": text}), POLICY)
    except EgressError:
        assert not token_like
    else:
        assert token_like


def test_policy_rejects_bad_k_min() -> None:
    with pytest.raises(ValueError, match="k_min must be >= 1, got 0"):
        EgressPolicy(k_min=0)


def test_cells_merge_by_addition() -> None:
    assert Cell("a", 2, 3.0, 5.0) + Cell("a", 1, 1.0, 1.0) == Cell("a", 3, 4.0, 6.0)
