"""The generic tool-use pre-training corpus and the base pre-training run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from examples.flywheel.pretrain import PretrainConfig, generic_corpus, pretrain_base
from examples.flywheel.tasks import FAMILIES


def test_generic_corpus_shares_no_tool_or_parameter_with_the_task_families() -> None:
    # Prepare
    tools = {f.tool_name for f in FAMILIES.values()}
    params = {p for f in FAMILIES.values() for p in f.parameters["properties"]}
    # Execute
    docs = list(generic_corpus(500, seed=0, echo=0.3))
    # Assert
    for doc in (d for d in docs if d["task_type"] == "generic"):
        call = doc["messages"][2]["tool_calls"][0]
        assert call["name"] not in tools
        assert not set(call["arguments"]) & params
        # Every argument value and its parameter's name are stated in the user's request
        # (copying by content), and the tool's result is restated in the final answer.
        text = doc["messages"][1]["content"]
        for key, value in call["arguments"].items():
            assert str(value) in text and key in text
        result = json.loads(doc["messages"][3]["content"])["result"]
        assert str(result) in doc["final_response"]


def test_corpus_version_1_states_values_in_order() -> None:
    for doc in generic_corpus(200, seed=0, version=1):
        call = doc["messages"][2]["tool_calls"][0]
        text = doc["messages"][1]["content"]
        positions = [text.index(f"{k} {v}") for k, v in call["arguments"].items()]
        assert positions == sorted(positions)


def test_corpus_version_2_varies_the_order_of_values() -> None:
    unordered = 0
    for doc in generic_corpus(200, seed=0):
        call = doc["messages"][2]["tool_calls"][0]
        text = doc["messages"][1]["content"]
        positions = [text.index(str(v)) for v in call["arguments"].values()]
        unordered += positions != sorted(positions)
    assert unordered > 20


def test_pretrain_base_saves_a_reloadable_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Prepare
    from hermes_fed.training.adapter import load_base_model

    # Execute
    info = pretrain_base(tiny_model_dir, tmp_path / "pre", PretrainConfig(steps=2, batch_size=2))
    model, tokenizer = load_base_model(tmp_path / "pre")
    # Assert
    assert info["loss_first"] > 0 and info["seconds"] > 0
    assert tokenizer.chat_template == load_base_model(tiny_model_dir)[1].chat_template
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize(("kwargs", "field"), [({"steps": 0}, "steps"),
                                              ({"batch_size": -1}, "batch_size"),
                                              ({"lr": 0.0}, "lr"),
                                              ({"corpus": 4}, "corpus"),
                                              ({"max_length": 0}, "max_length"),
                                              ({"echo": 1.0}, "echo")])
def test_pretrain_config_names_the_bad_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"PretrainConfig.{field}"):
        PretrainConfig(**kwargs)


def test_corpus_is_seeded() -> None:
    assert list(generic_corpus(5, 1)) == list(generic_corpus(5, 1))
    assert list(generic_corpus(5, 1)) != list(generic_corpus(5, 2))


def test_echo_dialogs_repeat_the_users_span_and_have_no_tools() -> None:
    docs = list(generic_corpus(300, seed=0, echo=0.3))
    echoes = [d for d in docs if d["task_type"] == "generic_echo"]
    assert 50 < len(echoes) < 130
    for doc in echoes:
        assert doc["tools"] == [] and len(doc["messages"]) == 3
        assert doc["messages"][1]["content"].endswith(": " + doc["final_response"])


def test_sim_base_tokenizer_isolates_spaces(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from examples.flywheel.pretrain import init_sim_base

    base = init_sim_base(tmp_path / "b", "1m", seed=0)
    tok = AutoTokenizer.from_pretrained(str(base))
    assert tok.tokenize("days after 2026-04-01")[-5:] == ["2026", "-", "04", "-", "01"]
    assert tok.tokenize('"2026-04-01"')[1:6] == ["2026", "-", "04", "-", "01"]


def test_corpus_version_3_names_half_the_tools_only_in_the_schema() -> None:
    # Prepare
    tools = {f.tool_name for f in FAMILIES.values()}
    params = {p for f in FAMILIES.values() for p in f.parameters["properties"]}
    schema_only = 0
    # Execute
    docs = [d for d in generic_corpus(2000, seed=1, version=3) if d["task_type"] == "generic"]
    # Assert: never a family's tool or key; the schema names the call's tool and keys
    for doc in docs:
        call = doc["messages"][2]["tool_calls"][0]
        (tool,) = doc["tools"]
        assert call["name"] not in tools and not set(call["arguments"]) & params
        assert tool["name"] == call["name"]
        assert list(tool["parameters"]["properties"]) == list(call["arguments"])
        text = doc["messages"][1]["content"]
        positions = [text.index(str(v)) for v in call["arguments"].values()]
        if call["name"] not in text and not any(k in text for k in call["arguments"]):
            schema_only += 1
            assert positions == sorted(positions)  # values come in the schema's order
    assert 0.4 * len(docs) < schema_only < 0.6 * len(docs)
