"""The trainer: learning, NaN guard (T4), frozen-a (T3), determinism and resume (T5), DPO."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from hermes_fed.errors import TrainingError
from hermes_fed.training.adapter import frozen_a_matrix
from hermes_fed.training.config import LoraTrainingConfig
from hermes_fed.training.dataset import PreferenceExample, TrainingExample
from hermes_fed.training.evaluation import evaluate
from hermes_fed.training.trainer import CHECKPOINT, train_adapter
from tests.unit.training.tasks import arithmetic_trajectory

FAST = LoraTrainingConfig(r=4, lr=1e-2, max_steps=4, batch_size=4, max_length=256, device="cpu")


def _examples(n: int, seed: int = 0, weight: float = 1.0) -> list[TrainingExample]:
    return [TrainingExample(arithmetic_trajectory(i, seed), weight, "gold") for i in range(n)]


def test_tiny_model_learns_the_tiny_task(tiny_model_dir: Path) -> None:
    # Prepare: train and held-out trajectories come from disjoint seeds
    train = _examples(48, seed=1)
    heldout = [arithmetic_trajectory(i, seed=2) for i in range(12)]
    config = dataclasses.replace(FAST, r=8, max_steps=40, batch_size=8)
    # Execute
    result = train_adapter(tiny_model_dir, train, config)
    report = evaluate(tiny_model_dir, result.adapter, heldout, config=config).metrics()
    # Assert: mean assistant log-likelihood per token improves by at least 1 nat
    assert report["heldout_n"] == 12
    assert report["heldout_loglik_adapter"] - report["heldout_loglik_base"] >= 1.0, report
    assert result.metrics["train_loss_last"] < result.metrics["train_loss_first"]
    assert result.steps == 40 and result.num_examples == 48


def test_same_inputs_give_the_same_adapter(tiny_model_dir: Path) -> None:
    config = dataclasses.replace(FAST, dropout=0.1)
    first = train_adapter(tiny_model_dir, _examples(8), config)
    second = train_adapter(tiny_model_dir, _examples(8), config)
    other = train_adapter(tiny_model_dir, _examples(8), dataclasses.replace(config, seed=1))
    assert first.adapter.keys() == second.adapter.keys()
    assert all(np.array_equal(first.adapter[k], second.adapter[k]) for k in first.adapter)
    assert any(not np.array_equal(first.adapter[k], other.adapter[k]) for k in first.adapter)


def _poisoned_base(base: Path, out: Path, token_id: int) -> Path:
    """A copy of the base model, untied, whose input embedding of one token is NaN."""
    out.mkdir()
    for f in base.iterdir():
        if f.name not in ("model.safetensors", "config.json"):
            (out / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(base / "model.safetensors"))
    embed = weights["model.embed_tokens.weight"].clone()
    weights["lm_head.weight"] = embed.clone()
    embed[token_id] = float("nan")
    weights["model.embed_tokens.weight"] = embed
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = (base / "config.json").read_text()
    (out / "config.json").write_text(
        config.replace('"tie_word_embeddings": true', '"tie_word_embeddings": false')
    )
    return out


def test_inv_t4_nan_in_a_batch_stops_training_naming_the_step(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Prepare: only the example mentioning "<tool_response>" meets the NaN embedding
    from transformers import AutoTokenizer

    token = AutoTokenizer.from_pretrained(str(tiny_model_dir)).convert_tokens_to_ids("<tool_response>")
    base = _poisoned_base(tiny_model_dir, tmp_path / "poisoned", token)
    clean = [
        TrainingExample(
            {
                "trajectory_id": f"c{i}",
                "messages": [
                    {"role": "user", "content": f"say {i}"},
                    {"role": "assistant", "content": f"{i}"},
                ],
            },
            1.0,
            "gold",
        )
        for i in range(5)
    ]
    poisoned = TrainingExample(arithmetic_trajectory(0), 1.0, "gold")
    config = dataclasses.replace(FAST, batch_size=1, max_steps=6)
    done: list[int] = []
    # Execute
    with pytest.raises(TrainingError) as caught:
        train_adapter(base, [*clean, poisoned], config, progress=lambda step, total, loss: done.append(step))
    # Assert: the failing step is the one after the last completed step, and the loss named
    match = re.search(r"step (\d+): loss is nan", str(caught.value))
    assert match, str(caught.value)
    assert int(match.group(1)) == len(done) + 1
    # the same base trains fine without the poisoned example
    assert train_adapter(base, clean, config).steps == 6


def test_inv_t4_nan_in_the_initial_adapter_names_the_tensor(tiny_model_dir: Path) -> None:
    state = train_adapter(tiny_model_dir, _examples(4), dataclasses.replace(FAST, max_steps=1))
    name = sorted(k for k in state.adapter if "lora_B" in k)[0]
    bad = {**state.adapter, name: np.full_like(state.adapter[name], np.inf)}
    with pytest.raises(TrainingError, match=rf"step 0: .*{re.escape(name)}"):
        train_adapter(tiny_model_dir, _examples(4), FAST, init_adapter=bad)


def test_inv_t3_frozen_a_is_shared_and_never_trained(tiny_model_dir: Path) -> None:
    # Prepare: two nodes with different local seeds and data, the same frozen_a_seed
    node1 = dataclasses.replace(FAST, frozen_a=True, frozen_a_seed=42, seed=1)
    node2 = dataclasses.replace(FAST, frozen_a=True, frozen_a_seed=42, seed=2)
    # Execute
    one = train_adapter(tiny_model_dir, _examples(8, seed=1), node1).adapter
    two = train_adapter(tiny_model_dir, _examples(8, seed=2), node2).adapter
    # Assert
    a_names = [k for k in one if ".lora_A." in k]
    b_names = [k for k in one if ".lora_B." in k]
    assert a_names and len(a_names) == len(b_names)
    for name in a_names:
        expected = frozen_a_matrix(name, one[name].shape, 42)
        assert np.array_equal(one[name], expected) and np.array_equal(two[name], expected)
    assert all(np.any(one[k] != 0) for k in b_names)  # B did train
    assert any(not np.array_equal(one[k], two[k]) for k in b_names)


def test_frozen_a_depends_on_its_seed_only() -> None:
    a = frozen_a_matrix("x.lora_A.weight", (4, 16), 0)
    assert np.array_equal(a, frozen_a_matrix("x.lora_A.weight", (4, 16), 0))
    assert not np.array_equal(a, frozen_a_matrix("x.lora_A.weight", (4, 16), 1))
    assert not np.array_equal(a, frozen_a_matrix("y.lora_A.weight", (4, 16), 0))
    assert np.abs(a).max() <= 0.25  # U(-1/sqrt(16), 1/sqrt(16))


def test_frozen_a_refuses_an_init_adapter_with_another_a(tiny_model_dir: Path) -> None:
    config = dataclasses.replace(FAST, frozen_a=True, frozen_a_seed=1, max_steps=1)
    init = train_adapter(tiny_model_dir, _examples(4), config).adapter
    with pytest.raises(TrainingError, match="frozen-a"):
        train_adapter(
            tiny_model_dir, _examples(4), dataclasses.replace(config, frozen_a_seed=2), init_adapter=init
        )


def _crash_after_step_3(model_dir: Path, checkpoint_dir: Path, config: LoraTrainingConfig) -> None:
    """A run of ``config`` interrupted right after its step 3 (checkpoints in ``checkpoint_dir``)."""

    def crash_at_3(step: int, total: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_adapter(model_dir, _examples(12), config, progress=crash_at_3, checkpoint_dir=checkpoint_dir)


def test_inv_t5_resumed_run_equals_uninterrupted_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Prepare
    config = dataclasses.replace(FAST, max_steps=6, dropout=0.1, checkpoint_every=2, grad_accumulation=2)
    straight = train_adapter(tiny_model_dir, _examples(12), config)
    # Execute: crash after step 3 (checkpoint at step 2), then run again
    _crash_after_step_3(tiny_model_dir, tmp_path, config)
    assert (tmp_path / CHECKPOINT).exists()
    resumed = train_adapter(tiny_model_dir, _examples(12), config, checkpoint_dir=tmp_path)
    # Assert
    assert resumed.metrics["resumed_from_step"] == 2
    assert all(np.array_equal(straight.adapter[k], resumed.adapter[k]) for k in straight.adapter)


def test_checkpoint_of_other_inputs_is_not_resumed(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(FAST, max_steps=4, checkpoint_every=1)

    def crash(step: int, total: int, loss: float) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_adapter(tiny_model_dir, _examples(8), config, progress=crash, checkpoint_dir=tmp_path)
    other = train_adapter(tiny_model_dir, _examples(8, seed=5), config, checkpoint_dir=tmp_path)
    assert other.metrics["resumed_from_step"] == 0


def _seq_logp(
    base: Path, adapter: dict[str, np.ndarray] | None, trajectory: dict[str, Any], config: LoraTrainingConfig
) -> float:
    result = evaluate(base, adapter, [trajectory], config=config).examples[0]
    value = result.adapter_loglik if adapter is not None else result.base_loglik
    assert value is not None
    return value * result.num_tokens


def test_dpo_prefers_chosen_over_rejected(tiny_model_dir: Path) -> None:
    # Prepare: chosen answers are right, rejected ones wrong; no SFT signal separates them
    pairs = []
    for i in range(8):
        chosen = arithmetic_trajectory(i, seed=3)
        rejected = {
            **chosen,
            "messages": [*chosen["messages"][:-1], {"role": "assistant", "content": "I cannot do that."}],
        }
        pairs.append(PreferenceExample(rejected=rejected, chosen=chosen))
    config = dataclasses.replace(
        FAST, preference_loss=True, dpo_beta=0.5, max_steps=12, lr=5e-3, dpo_weight=1.0
    )
    sft_only = [
        TrainingExample(
            {
                "trajectory_id": "s",
                "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
            },
            1e-3,
            "bronze",
        )
    ]
    # Execute
    result = train_adapter(tiny_model_dir, sft_only, config, preference_pairs=pairs)
    # Assert: the chosen-minus-rejected margin grows under the adapter
    probe = pairs[0]
    before = _seq_logp(tiny_model_dir, None, dict(probe.chosen), config) - _seq_logp(
        tiny_model_dir, None, dict(probe.rejected), config
    )
    after = _seq_logp(tiny_model_dir, result.adapter, dict(probe.chosen), config) - _seq_logp(
        tiny_model_dir, result.adapter, dict(probe.rejected), config
    )
    assert after > before + 1.0, (before, after)
    assert result.metrics["dpo_loss_last"] < float(np.log(2))


def test_tier_weights_change_the_update(tiny_model_dir: Path) -> None:
    # SFT is a weighted mean over a batch, so a constant weight cancels out and training is
    # identical; unequal weights inside a batch change the update.
    config = dataclasses.replace(FAST, batch_size=4, max_steps=1)
    ones = train_adapter(tiny_model_dir, _examples(4, weight=1.0), config).adapter
    fives = train_adapter(tiny_model_dir, _examples(4, weight=5.0), config).adapter
    mixed_examples = [
        dataclasses.replace(e, weight=5.0 if i == 0 else 0.3) for i, e in enumerate(_examples(4))
    ]
    mixed = train_adapter(tiny_model_dir, mixed_examples, config).adapter
    assert all(np.allclose(ones[k], fives[k], atol=1e-6) for k in ones)
    assert any(not np.allclose(ones[k], mixed[k], atol=1e-6) for k in ones)


def test_torch_threads_left_alone() -> None:
    assert torch.get_num_threads() == 1


def test_frozen_a_accepts_an_init_adapter_of_b_factors_only(tiny_model_dir: Path) -> None:
    # Prepare: the federation ships only B in frozen-a mode
    config = dataclasses.replace(FAST, frozen_a=True, frozen_a_seed=3, max_steps=2)
    full = train_adapter(tiny_model_dir, _examples(4), config).adapter
    b_only = {k: v for k, v in full.items() if ".lora_B." in k}
    # Execute
    from_full = train_adapter(tiny_model_dir, _examples(4, seed=1), config, init_adapter=full)
    from_b = train_adapter(tiny_model_dir, _examples(4, seed=1), config, init_adapter=b_only)
    with_a = evaluate(tiny_model_dir, full, [arithmetic_trajectory(0)], config=config)
    without_a = evaluate(tiny_model_dir, b_only, [arithmetic_trajectory(0)], config=config)
    # Assert
    assert all(np.array_equal(from_full.adapter[k], from_b.adapter[k]) for k in full)
    assert with_a.examples[0].adapter_loglik == without_a.examples[0].adapter_loglik
    not_frozen = dataclasses.replace(config, frozen_a=False)
    with pytest.raises(TrainingError, match="missing"):
        train_adapter(tiny_model_dir, _examples(4), not_frozen, init_adapter=b_only)


@pytest.fixture
def stepped_lrs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The learning rate of every AdamW step taken while the test runs."""
    seen: list[float] = []

    class RecordingAdamW(torch.optim.AdamW):
        def step(self, closure: Any = None) -> Any:
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "AdamW", RecordingAdamW)
    return seen


COSINE = dataclasses.replace(
    FAST, lr=1e-2, max_steps=6, lr_schedule="cosine", warmup_steps=2, min_lr_ratio=0.1
)
# By hand: warmup over 2 steps (s / 2 of the peak), then p = (s - 3) / 4 and
# lr = 1e-3 + 9e-3 (1 + cos(pi p)) / 2; cos(pi / 4) = 0.70710678...
COSINE_LRS = [
    5e-3,
    1e-2,
    1e-2,
    1e-3 + 4.5e-3 * (1 + 0.7071067811865476),
    5.5e-3,
    1e-3 + 4.5e-3 * (1 - 0.7071067811865476),
]


def test_scheduled_run_steps_with_the_scheduled_learning_rates(
    tiny_model_dir: Path, stepped_lrs: list[float]
) -> None:
    # Prepare
    constant_config = dataclasses.replace(COSINE, lr_schedule="constant", warmup_steps=0)
    # Execute
    scheduled = train_adapter(tiny_model_dir, _examples(8), COSINE)
    constant = train_adapter(tiny_model_dir, _examples(8), constant_config)
    # Assert
    assert stepped_lrs[:6] == pytest.approx(COSINE_LRS, rel=1e-12)
    assert stepped_lrs[6:] == [1e-2] * 6
    assert any(not np.array_equal(scheduled.adapter[k], constant.adapter[k]) for k in constant.adapter)


def test_inv_t5_scheduled_run_resumed_mid_way_equals_uninterrupted_run(
    tiny_model_dir: Path, tmp_path: Path, stepped_lrs: list[float]
) -> None:
    # Prepare: a checkpoint at step 2 (end of warmup), crash after step 3 (first decay step)
    config = dataclasses.replace(COSINE, dropout=0.1, checkpoint_every=2, grad_accumulation=2)
    straight = train_adapter(tiny_model_dir, _examples(12), config)
    _crash_after_step_3(tiny_model_dir, tmp_path, config)
    del stepped_lrs[:]
    # Execute
    resumed = train_adapter(tiny_model_dir, _examples(12), config, checkpoint_dir=tmp_path)
    # Assert: steps 3..6 ran at the schedule's rates, and the adapter is bit-identical
    assert resumed.metrics["resumed_from_step"] == 2
    assert stepped_lrs == pytest.approx(COSINE_LRS[2:], rel=1e-12)
    assert all(np.array_equal(straight.adapter[k], resumed.adapter[k]) for k in straight.adapter)
