"""The simulator's base model: the recipe builds a loadable model, and the packaged copy
really copies from the prompt (what the flywheel builds on), unlike a random init."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from examples.flywheel.base import (
    RECIPE_FILE,
    BaseRecipe,
    base_recipe_of,
    build_base,
    probe_copying,
    shipped_base,
)
from hermes_fed.errors import ConfigError
from hermes_fed.training.adapter import load_base_model


def test_build_base_runs_both_stages_and_records_the_recipe(tmp_path: Path) -> None:
    # Arrange
    recipe = BaseRecipe(steps=2, copy_steps=1, seed=3)
    lines: list[str] = []

    # Execute
    info = build_base(tmp_path / "base", recipe, say=lines.append)

    # Assert: a loadable model dir whose pretrain.json names the recipe and both stages
    model, tokenizer = load_base_model(tmp_path / "base")
    assert model.config.vocab_size == len(tokenizer)
    recorded = base_recipe_of(tmp_path / "base")
    assert recorded == json.loads(json.dumps(info))
    assert recorded is not None and recorded["recipe"]["steps"] == 2
    assert [s["steps"] for s in recorded["stages"]] == [2, 1]
    assert [s["echo"] for s in recorded["stages"]] == [0.3, 0.8]
    assert [s["seed"] for s in recorded["stages"]] == [3, 5]
    assert sum("stage" in line for line in lines) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]  # no scratch left behind


def test_build_base_refuses_a_directory_holding_a_model(tmp_path: Path) -> None:
    # Arrange
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    # Execute / Assert
    with pytest.raises(ConfigError, match="already holds a model"):
        build_base(tmp_path / "base", BaseRecipe(steps=1, copy_steps=0), say=lambda _: None)
    assert (tmp_path / "base" / "config.json").read_text() == "{}"


@pytest.mark.parametrize(("kwargs", "field"), [({"size": "3m"}, "size"), ({"steps": 0}, "steps"),
                                              ({"copy_steps": -1}, "copy_steps")])
def test_recipe_names_the_bad_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"BaseRecipe.{field}"):
        BaseRecipe(**kwargs)


def test_packaged_base_is_the_recipe_and_copies_from_the_prompt(tiny_model_dir: Path) -> None:
    # Arrange
    base = shipped_base()
    recorded = base_recipe_of(base)

    # Execute
    shipped = probe_copying(base, n=24)
    random_init = probe_copying(tiny_model_dir, n=24)

    # Assert: made by the default recipe (both stages ran to the end) ...
    assert recorded is not None and (base / RECIPE_FILE).is_file()
    assert recorded["recipe"] == asdict(BaseRecipe())
    assert [s["steps"] for s in recorded["stages"]] == [6000, 2000]
    # ... and it copies: it names the schema's tool and echoes spans; a random init does neither
    assert shipped["call_name"] >= 12 and shipped["echo_exact"] >= 12
    assert random_init["call_name"] == 0 and random_init["echo_exact"] == 0
