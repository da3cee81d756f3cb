"""The generic tool-use pre-training corpus and the base pre-training run."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermes_fed.sim.pretrain import PretrainConfig, generic_corpus, pretrain_base
from hermes_fed.sim.tasks import FAMILIES


def test_generic_corpus_shares_no_tool_or_parameter_with_the_task_families() -> None:
    # Prepare
    tools = {f.tool_name for f in FAMILIES.values()}
    params = {p for f in FAMILIES.values() for p in f.parameters["properties"]}
    # Execute
    docs = list(generic_corpus(500, seed=0))
    # Assert
    for doc in docs:
        call = doc["messages"][2]["tool_calls"][0]
        assert call["name"] not in tools
        assert not set(call["arguments"]) & params
        # Every argument value is stated in the user's request, in order (copying).
        text = doc["messages"][1]["content"]
        positions = [text.index(f"{k} {v}") for k, v in call["arguments"].items()]
        assert positions == sorted(positions)


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
                                              ({"lr": 0.0}, "lr")])
def test_pretrain_config_names_the_bad_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"PretrainConfig.{field}"):
        PretrainConfig(**kwargs)


def test_corpus_is_seeded() -> None:
    assert list(generic_corpus(5, 1)) == list(generic_corpus(5, 1))
    assert list(generic_corpus(5, 1)) != list(generic_corpus(5, 2))
