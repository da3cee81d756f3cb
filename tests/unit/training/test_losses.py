"""Loss maths against independent references (HF's own loss; DPO by hand)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from hermes_fed.training import losses
from hermes_fed.training.adapter import load_base_model
from hermes_fed.training.dataset import collate, tokenize_trajectory
from tests.unit.training.tasks import arithmetic_trajectory


def test_head_at_loss_positions_equals_hf_loss(tiny_model_dir: Path) -> None:
    # Prepare: a right-padded batch of two examples of different lengths
    model, tokenizer = load_base_model(tiny_model_dir)
    model.eval()
    examples = [tokenize_trajectory(tokenizer, arithmetic_trajectory(i), max_length=512) for i in range(2)]
    examples[1] = tokenize_trajectory(
        tokenizer,
        {
            "trajectory_id": "s",
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}],
        },
        max_length=512,
    )
    batch = {k: torch.from_numpy(v) for k, v in collate(examples, tokenizer.pad_token_id).items()}
    labels = batch["input_ids"].masked_fill(batch["loss_weights"] == 0, -100)
    # Execute
    with torch.no_grad():
        reference = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels
        ).loss
        logp, rows, weights = losses.token_logprobs(
            model, batch["input_ids"], batch["attention_mask"], batch["loss_weights"]
        )
        ours = losses.weighted_sft_loss(logp, weights)
    # Assert
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    assert len(logp) == int((labels[:, 1:] != -100).sum())
    assert set(rows.tolist()) == {0, 1}


@pytest.mark.parametrize(
    ("pc", "pr", "rc", "rr", "beta", "expected"),
    [
        (0.0, 0.0, 0.0, 0.0, 0.1, math.log(2)),
        (-1.0, -3.0, -2.0, -2.0, 1.0, -math.log(1 / (1 + math.exp(-2.0)))),
        (-5.0, -1.0, -5.0, -1.0, 0.5, math.log(2)),  # no change from the reference
        (-3.0, -1.0, -1.0, -1.0, 0.5, -math.log(1 / (1 + math.exp(1.0)))),
    ],
)
def test_dpo_loss_by_hand(pc: float, pr: float, rc: float, rr: float, beta: float, expected: float) -> None:
    t = torch.tensor
    value = losses.dpo_loss(t([pc]), t([pr]), t([rc]), t([rr]), beta)
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_weighted_sft_and_sequence_sums() -> None:
    logp = torch.tensor([-1.0, -2.0, -4.0])
    weights = torch.tensor([1.0, 1.0, 2.0])
    assert losses.weighted_sft_loss(logp, weights).item() == pytest.approx(11.0 / 4.0)
    sums = losses.sequence_logprobs(logp, torch.tensor([0, 2, 2]), 3)
    assert sums.tolist() == [-1.0, 0.0, -6.0]
