"""Dataset building: chat rendering, the assistant loss mask (T1), bucketing, held-out split (T2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from hermes_fed.training.dataset import (
    TrainingExample,
    build_dataset,
    collate,
    length_buckets,
    split_heldout,
    to_chat,
    tokenize_trajectory,
)
from tests.unit.training.tasks import arithmetic_trajectory


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def _call(name: str, args: dict[str, Any], cid: str = "c1") -> dict[str, Any]:
    return {"id": cid, "name": name, "arguments": args}


PLAIN = {
    "trajectory_id": "t-plain",
    "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello there!"}],
}
MULTI_TOOL = {
    "trajectory_id": "t-multi",
    "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "look up two things"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                _call("search", {"query": "a b", "limit": 3}),
                _call("read_file", {"path": "x.txt"}, "c2"),
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "search", "content": '{"hits": []}'},
        {"role": "tool", "tool_call_id": "c2", "name": "read_file", "content": "file body"},
        {"role": "assistant", "content": "Nothing found; the file says: file body"},
    ],
    "tools": [{"name": "search", "description": "d", "parameters": {"type": "object"}}],
}
MULTI_TURN = {
    "trajectory_id": "t-turns",
    "messages": [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "two ü"},
    ],
}


def _expected_assistant_pieces(trajectory: dict[str, Any]) -> list[str]:
    """Independent reference: what each assistant turn renders to, by hand."""
    pieces = []
    for m in trajectory["messages"]:
        if m["role"] != "assistant":
            continue
        calls = "".join(
            '<tool_call>{"name": '
            + json.dumps(c["name"], ensure_ascii=False)
            + ', "arguments": '
            + json.dumps(c["arguments"], ensure_ascii=False)
            + "}</tool_call>"
            for c in m.get("tool_calls", [])
        )
        pieces.append(m["content"] + calls + "<|im_end|>")
    return pieces


def _runs(mask: tuple[int, ...]) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, bit in enumerate((*mask, 0)):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            runs.append((start, i))
            start = None
    return runs


@pytest.mark.parametrize(
    "trajectory",
    [PLAIN, MULTI_TOOL, MULTI_TURN, arithmetic_trajectory(3)],
    ids=["plain", "multi-tool", "multi-turn", "arithmetic"],
)
def test_inv_t1_loss_mask_covers_exactly_the_assistant_tokens(
    tokenizer: Any, trajectory: dict[str, Any]
) -> None:
    # Prepare
    expected = _expected_assistant_pieces(trajectory)
    # Execute
    example = tokenize_trajectory(tokenizer, trajectory, max_length=4096)
    # Assert: one masked run per assistant turn, decoding to exactly that turn's text
    runs = _runs(example.assistant_mask)
    decoded = [tokenizer.decode(example.input_ids[a:b]) for a, b in runs]
    assert decoded == expected
    unmasked = tokenizer.decode(
        [t for t, m in zip(example.input_ids, example.assistant_mask, strict=True) if not m]
    )
    for message in trajectory["messages"]:
        if message["role"] in ("user", "tool"):
            assert message["content"] in unmasked


def test_tool_calls_and_results_are_rendered(tokenizer: Any) -> None:
    messages, tools = to_chat(MULTI_TOOL)
    text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    assert '<tool_call>{"name": "read_file", "arguments": {"path": "x.txt"}}</tool_call>' in text
    assert '<tool_response>{"hits": []}</tool_response>' in text
    assert '"description": "d"' in text


@pytest.mark.parametrize(
    ("trajectory", "field"),
    [
        ({"trajectory_id": "t", "messages": []}, "messages"),
        ({"trajectory_id": "t", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"trajectory_id": "t", "messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        (
            {
                "trajectory_id": "t",
                "messages": [
                    {"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": "x=1"}]}
                ],
            },
            "messages[0].tool_calls[0]",
        ),
    ],
)
def test_malformed_trajectory_names_the_field(trajectory: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        to_chat(trajectory)


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf")])
def test_training_example_rejects_bad_weight(weight: float) -> None:
    with pytest.raises(ValueError, match="weight"):
        TrainingExample(PLAIN, weight, "gold")


def test_truncation_keeps_the_start_and_drops_examples_without_loss(tokenizer: Any) -> None:
    # Prepare
    full = tokenize_trajectory(tokenizer, MULTI_TOOL, max_length=4096)
    first_loss = full.assistant_mask.index(1)
    # Execute
    cut = tokenize_trajectory(tokenizer, MULTI_TOOL, max_length=first_loss + 3)
    kept = build_dataset(tokenizer, [TrainingExample(MULTI_TOOL, 1.0, "gold")], max_length=first_loss)
    # Assert
    assert cut.truncated and cut.input_ids == full.input_ids[: first_loss + 3]
    assert kept == []


def test_collate_weights_only_assistant_targets(tokenizer: Any) -> None:
    a = tokenize_trajectory(tokenizer, PLAIN, max_length=512, weight=5.0)
    b = tokenize_trajectory(tokenizer, MULTI_TURN, max_length=512, weight=0.3)
    batch = collate([a, b], pad_id=tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, max(len(a.input_ids), len(b.input_ids)))
    np.testing.assert_array_equal(
        batch["loss_weights"][0, : len(a.input_ids)],
        np.array([0, *a.assistant_mask[1:]], dtype=np.float32) * 5.0,
    )
    assert batch["loss_weights"][0, len(a.input_ids) :].sum() == 0
    assert batch["attention_mask"].sum() == len(a.input_ids) + len(b.input_ids)
    assert set(np.unique(batch["loss_weights"][1])) <= {0.0, np.float32(0.3)}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=200), st.integers(1, 9), st.integers(0, 2**31))
def test_length_buckets_use_every_index_once(lengths: list[int], batch_size: int, seed: int) -> None:
    batches = length_buckets(lengths, batch_size, seed)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert batches == length_buckets(lengths, batch_size, seed)


def test_length_buckets_reduce_padding() -> None:
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(10, 500, size=512)]
    batches = length_buckets(lengths, 8, seed=1)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    naive = sum(8 * max(lengths[i : i + 8]) for i in range(0, 512, 8))
    assert padded < 0.8 * naive


ids_strategy = st.lists(st.text(min_size=1, max_size=12), max_size=60, unique=True)


@settings(max_examples=60, deadline=None)
@given(ids_strategy, ids_strategy, st.floats(0.0, 0.99), st.integers(0, 1000))
def test_inv_t2_heldout_membership_is_stable_as_data_grows(
    old: list[str], new: list[str], fraction: float, seed: int
) -> None:
    # Prepare
    before = split_heldout(old, fraction, seed)
    # Execute
    after = split_heldout(old + new, fraction, seed)
    # Assert: no id moves between the sets; the sets partition the ids
    assert set(before.heldout) <= set(after.heldout)
    assert set(before.train) <= set(after.train)
    assert set(after.train).isdisjoint(after.heldout)
    assert set(after.train) | set(after.heldout) == set(old) | set(new)


def test_heldout_fraction_and_seed() -> None:
    ids = [f"t-{i}" for i in range(4000)]
    split = split_heldout(ids, 0.1, seed=7)
    other = split_heldout(ids, 0.1, seed=8)
    assert 320 < len(split.heldout) < 480
    assert set(split.heldout) != set(other.heldout)
    assert split_heldout(ids, 0.0, seed=7).heldout == ()
    with pytest.raises(ValueError, match="fraction"):
        split_heldout(ids, 1.0, seed=7)


def test_examples_from_manifest_keeps_order_weight_and_tier() -> None:
    from hermes_fed.quality.selection import ManifestItem
    from hermes_fed.training.dataset import examples_from_manifest

    trajectories = {t["trajectory_id"]: t for t in (arithmetic_trajectory(i) for i in range(3))}
    items = [
        ManifestItem("t-0-2", "platinum", 5.0, "arithmetic"),
        ManifestItem("t-0-0", "bronze", 0.3, "arithmetic"),
    ]
    examples = examples_from_manifest(items, trajectories)
    assert [(e.trajectory["trajectory_id"], e.weight, e.tier) for e in examples] == [
        ("t-0-2", 5.0, "platinum"),
        ("t-0-0", 0.3, "bronze"),
    ]
    with pytest.raises(ValueError, match="t-9"):
        examples_from_manifest([ManifestItem("t-9", "gold", 2.0, "x")], trajectories)


def test_a_weight_zero_assistant_turn_is_context_without_loss(tokenizer: Any) -> None:
    # Prepare: OpenAI fine-tuning's per-message weight 0 on the first answer
    weighted = json.loads(json.dumps(MULTI_TURN))
    weighted["messages"][1]["weight"] = 0
    weighted["messages"][3]["weight"] = 1

    # Execute
    full = tokenize_trajectory(tokenizer, MULTI_TURN, max_length=4096)
    example = tokenize_trajectory(tokenizer, weighted, max_length=4096)

    # Assert: same tokens; only the second answer carries loss, the first stays as context
    assert example.input_ids == full.input_ids
    runs = _runs(example.assistant_mask)
    assert [tokenizer.decode(example.input_ids[a:b]) for a, b in runs] == ["two ü<|im_end|>"]
    assert "one" in tokenizer.decode(example.input_ids)


def test_every_assistant_turn_at_weight_zero_leaves_no_example(tokenizer: Any) -> None:
    # Prepare
    weighted = json.loads(json.dumps(MULTI_TURN))
    for message in weighted["messages"]:
        if message["role"] == "assistant":
            message["weight"] = 0

    # Execute
    kept = build_dataset(tokenizer, [TrainingExample(weighted, 1.0, "gold")], max_length=4096)

    # Assert
    assert kept == []
