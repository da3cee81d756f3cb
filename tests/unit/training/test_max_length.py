"""Examples longer than ``max_length``: cut at the end and counted, or, when nothing of an
assistant turn is left, refused with their own error (reason code ``examples-too-long``,
not "training failed"), so the coordinator can say "raise --max-length" (issue 21)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermes_fed.errors import ExamplesTooLongError
from hermes_fed.federation.reasons import REASONS, reason_for
from hermes_fed.formats.hermes import from_hermes
from hermes_fed.training.config import LoraTrainingConfig
from hermes_fed.training.dataset import TrainingExample
from hermes_fed.training.trainer import train_adapter
from tests.e2e.agent_datasets import hermes_rows

BASE = Path(__file__).resolve().parents[3] / "examples" / "flywheel" / "base_model"


def test_examples_cut_before_any_assistant_token_are_refused_by_name() -> None:
    # Prepare: NousResearch rows, whose system prompt alone is longer than 64 tokens
    examples = [TrainingExample(trajectory=from_hermes(r), weight=1.0, tier="gold")
                for r in hermes_rows(3)]
    config = LoraTrainingConfig(r=4, alpha=8.0, max_steps=1, max_length=64, device="cpu")

    # Execute
    with pytest.raises(ExamplesTooLongError) as caught:
        train_adapter(str(BASE), examples, config)

    # Assert
    assert str(caught.value) == ("none of 3 examples has an assistant token within "
                                 "max_length=64")
    assert reason_for(caught.value) == "examples-too-long"
    assert "raise --max-length" in REASONS["examples-too-long"]
