"""LoraTrainingConfig validation and round trips."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_fed.training.config import LoraTrainingConfig


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("r", 0),
        ("alpha", 0.0),
        ("alpha", float("nan")),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("lr", -1e-3),
        ("epochs", 0),
        ("max_steps", 0),
        ("batch_size", 0),
        ("grad_accumulation", 0),
        ("max_length", 1.5),
        ("device", "tpu"),
        ("target_modules", ()),
        ("target_modules", ["q_proj"]),
        ("dpo_beta", 0.0),
        ("dpo_weight", -1.0),
        ("max_grad_norm", 0.0),
        ("checkpoint_every", -1),
        ("weight_decay", float("inf")),
        ("lr_schedule", "exponential"),
        ("lr_schedule", "Cosine"),
        ("warmup_steps", -1),
        ("warmup_steps", 2.5),
        ("min_lr_ratio", 1.5),
        ("min_lr_ratio", -0.1),
        ("min_lr_ratio", float("nan")),
    ],
)
def test_bad_value_is_named(field: str, value: Any) -> None:
    with pytest.raises(
        ValueError,
        match=rf"LoraTrainingConfig\.{field} .*got {value!r}".replace("[", r"\[")
        .replace("]", r"\]")
        .replace("(", r"\(")
        .replace(")", r"\)"),
    ):
        LoraTrainingConfig(**{field: value})


@settings(max_examples=50, deadline=None)
@given(
    r=st.integers(1, 64),
    alpha=st.floats(0.5, 64),
    dropout=st.floats(0, 0.9),
    steps=st.one_of(st.none(), st.integers(1, 10_000)),
    frozen=st.booleans(),
    modules=st.lists(st.sampled_from(["q_proj", "k_proj", "v_proj", "o_proj"]), min_size=1, unique=True),
    schedule=st.sampled_from(["constant", "cosine", "linear"]),
    warmup=st.integers(0, 1000),
    min_ratio=st.floats(0, 1),
)
def test_dict_round_trip(
    r: int,
    alpha: float,
    dropout: float,
    steps: int | None,
    frozen: bool,
    modules: list[str],
    schedule: str,
    warmup: int,
    min_ratio: float,
) -> None:
    config = LoraTrainingConfig(
        r=r,
        alpha=alpha,
        dropout=dropout,
        max_steps=steps,
        frozen_a=frozen,
        target_modules=tuple(modules),
        lr_schedule=schedule,
        warmup_steps=warmup,
        min_lr_ratio=min_ratio,
    )
    assert LoraTrainingConfig.from_dict(config.to_dict()) == config
    assert config.scaling == alpha / r


def test_unknown_keys_and_peft_config() -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        LoraTrainingConfig.from_dict({"rank": 8})
    peft_config = LoraTrainingConfig(r=4, alpha=8, dropout=0.1).to_peft("/base")
    assert (peft_config.r, peft_config.lora_alpha, peft_config.lora_dropout) == (4, 8, 0.1)
    assert peft_config.base_model_name_or_path == "/base"
    assert all(f.metadata.get("help") for f in LoraTrainingConfig.__dataclass_fields__.values())


def test_dict_from_before_lr_schedules_loads_as_a_constant_rate() -> None:
    # Prepare: lineage JSON written before lr_schedule existed; those runs used a constant rate
    old = LoraTrainingConfig(lr=5e-3).to_dict()
    for key in ("lr_schedule", "warmup_steps", "min_lr_ratio"):
        del old[key]
    # Execute
    config = LoraTrainingConfig.from_dict(old)
    # Assert
    assert (config.lr_schedule, config.warmup_steps, config.lr) == ("constant", 0, 5e-3)
