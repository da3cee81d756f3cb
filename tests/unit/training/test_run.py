"""run_training: dataset -> training -> evaluation -> adapter directory, resumable."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from hermes_fed.cli import main
from hermes_fed.errors import TrainingError
from hermes_fed.training.adapter import MANIFEST, base_model_sha256, load_adapter
from hermes_fed.training.config import LoraTrainingConfig
from hermes_fed.training.dataset import TrainingExample, split_heldout
from hermes_fed.training.run import RUN_RECORD, run_training
from tests.unit.training.tasks import arithmetic_trajectory

CONFIG = LoraTrainingConfig(r=4, lr=1e-2, max_steps=4, batch_size=4, device="cpu", checkpoint_every=2)


def _split(n: int) -> tuple[list[TrainingExample], list[dict[str, object]]]:
    trajectories = {t["trajectory_id"]: t for t in (arithmetic_trajectory(i) for i in range(n))}
    split = split_heldout(trajectories, 0.25, seed=0)
    return (
        [TrainingExample(trajectories[t], 2.0, "gold") for t in split.train],
        [trajectories[t] for t in split.heldout],
    )


def test_run_writes_adapter_and_manifest_then_reuses_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Prepare
    selected, heldout = _split(16)
    assert heldout
    # Execute
    first = run_training(
        tiny_model_dir,
        selected,
        heldout,
        CONFIG,
        tmp_path,
        parent_version="v0",
        dataset_manifest_sha256="cd" * 32,
    )
    again = run_training(
        tiny_model_dir,
        selected,
        heldout,
        CONFIG,
        tmp_path,
        parent_version="v0",
        dataset_manifest_sha256="cd" * 32,
    )
    # Assert
    assert not first.resumed and again.resumed
    saved = load_adapter(first.adapter_dir)
    assert saved.manifest.base_model_sha256 == base_model_sha256(tiny_model_dir)
    assert saved.manifest.parent_version == "v0"
    assert saved.manifest.dataset_manifest_sha256 == "cd" * 32
    assert saved.manifest.metrics["heldout_n"] == len(heldout)
    assert saved.manifest.metrics["steps"] == 4
    assert all(np.array_equal(saved.state[k], first.training.adapter[k]) for k in saved.state)
    assert all(np.array_equal(again.training.adapter[k], first.training.adapter[k]) for k in saved.state)
    assert again.metrics == first.metrics
    assert not (tmp_path / "checkpoint").exists() and (tmp_path / RUN_RECORD).exists()


def test_changed_inputs_train_again(tiny_model_dir: Path, tmp_path: Path) -> None:
    selected, heldout = _split(12)
    run_training(tiny_model_dir, selected, heldout, CONFIG, tmp_path)
    other = run_training(tiny_model_dir, selected, heldout, dataclasses.replace(CONFIG, lr=5e-3), tmp_path)
    assert not other.resumed
    assert json.loads((tmp_path / "adapter" / MANIFEST).read_text())["training_config"]["lr"] == 5e-3


def test_crashed_run_resumes_from_its_checkpoint(tiny_model_dir: Path, tmp_path: Path) -> None:
    selected, heldout = _split(16)
    straight = run_training(tiny_model_dir, selected, heldout, CONFIG, tmp_path / "a")

    def crash(step: int, total: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_model_dir, selected, heldout, CONFIG, tmp_path / "b", progress=crash)
    resumed = run_training(tiny_model_dir, selected, heldout, CONFIG, tmp_path / "b")
    assert resumed.metrics["resumed_from_step"] == 2
    assert resumed.metrics["heldout_loglik_adapter"] == straight.metrics["heldout_loglik_adapter"]


def test_inv_t2_heldout_trajectory_in_the_selection_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    selected, heldout = _split(12)
    with pytest.raises(TrainingError, match="held-out"):
        run_training(tiny_model_dir, selected, [*heldout, dict(selected[0].trajectory)], CONFIG, tmp_path)
    assert not (tmp_path / "adapter").exists()


def test_cli_train(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(
            json.dumps({**arithmetic_trajectory(i), "weight": 2.0, "tier": "gold"}) + "\n" for i in range(12)
        )
    )
    code = main(
        [
            "model",
            "train",
            str(tiny_model_dir),
            str(data),
            str(tmp_path / "run"),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--heldout-fraction",
            "0.25",
            "--lr-schedule",
            "cosine",
            "--warmup-steps",
            "1",
        ]
    )
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["metrics"]["steps"] == 2.0
    trained_with = json.loads((Path(printed["adapter_dir"]) / MANIFEST).read_text())["training_config"]
    assert (trained_with["lr_schedule"], trained_with["warmup_steps"]) == ("cosine", 1)
    assert code == main(["model", "show", printed["adapter_dir"]])
