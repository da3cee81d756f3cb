"""One local training run: dataset -> training -> evaluation -> adapter directory.

``run_training`` is what ``hermes-fed node train`` calls between data selection and the
``TrainingRun*`` events; it never touches the event store. Layout of ``output_dir``::

    checkpoint/checkpoint.pt   optimizer + adapter state every N steps (removed at the end)
    adapter/                   PEFT adapter + hermes_manifest.json
    run.json                   fingerprint of the inputs + training figures (written last)

A crashed run restarted with the same inputs resumes from its checkpoint; a run whose
``run.json`` matches its inputs is not trained again (only re-evaluated).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hermes_fed.errors import TrainingError
from hermes_fed.training.adapter import (
    AdapterManifest,
    base_model_sha256,
    load_adapter,
    save_adapter,
    state_sha256,
)
from hermes_fed.training.config import LoraTrainingConfig
from hermes_fed.training.dataset import PreferenceExample, TrainingExample
from hermes_fed.training.evaluation import EvalResult, evaluate
from hermes_fed.training.trainer import Progress, TrainingResult, train_adapter
from hermes_fed.training.verifiers import VERIFIERS, VerifierRegistry

RUN_RECORD = "run.json"


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """A finished run: the training result, its evaluation and where the adapter lies."""

    training: TrainingResult
    evaluation: EvalResult
    adapter_dir: Path
    manifest: AdapterManifest
    metrics: dict[str, float]
    resumed: bool


def _inputs_sha256(
    base_sha: str,
    selected: Sequence[TrainingExample],
    heldout: Sequence[Mapping[str, Any]],
    config: LoraTrainingConfig,
    init_adapter: Mapping[str, np.ndarray] | None,
    parent_version: str | None,
    dataset_manifest_sha256: str | None,
    pairs: Sequence[PreferenceExample],
) -> str:
    cfg = config.to_dict()
    cfg.pop("device")
    cfg.pop("checkpoint_every")
    body = [
        base_sha,
        cfg,
        parent_version,
        dataset_manifest_sha256,
        state_sha256(init_adapter) if init_adapter else None,
        [[e.trajectory, e.weight, e.tier] for e in selected],
        [h.get("trajectory_id") for h in heldout],
        [[p.rejected, p.chosen, p.weight] for p in pairs],
    ]
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def run_training(
    base_model_dir: str | Path,
    selected: Sequence[TrainingExample],
    heldout: Sequence[Mapping[str, Any]],
    config: LoraTrainingConfig,
    output_dir: str | Path,
    *,
    init_adapter: Mapping[str, np.ndarray] | None = None,
    parent_version: str | None = None,
    dataset_manifest_sha256: str | None = None,
    preference_pairs: Sequence[PreferenceExample] = (),
    progress: Progress | None = None,
    verifiers: VerifierRegistry = VERIFIERS,
) -> RunOutcome:
    """Train on ``selected``, evaluate on ``heldout``, write the adapter; resumable.

    Raises ``TrainingError`` when a held-out trajectory is also selected for training
    (invariant T2) and on any numeric failure (invariant T4). ``metrics`` merges the
    training and evaluation figures (plain floats, safe for ``TrainingRunCompleted``).
    """
    out = Path(output_dir)
    selected_ids = {str(e.trajectory.get("trajectory_id")) for e in selected}
    leaked = sum(1 for h in heldout if str(h.get("trajectory_id")) in selected_ids)
    if leaked:
        raise TrainingError(
            f"{leaked} held-out trajectories are also selected for training; "
            "held-out data must never be trained on"
        )
    base_sha = base_model_sha256(base_model_dir)
    inputs = _inputs_sha256(
        base_sha,
        selected,
        heldout,
        config,
        init_adapter,
        parent_version,
        dataset_manifest_sha256,
        preference_pairs,
    )
    adapter_dir = out / "adapter"
    record_path = out / RUN_RECORD
    record = json.loads(record_path.read_text()) if record_path.exists() else None
    resumed = record is not None and record.get("inputs_sha256") == inputs
    if record is not None and resumed:
        saved = load_adapter(adapter_dir)
        training = TrainingResult(
            adapter=saved.state,
            num_examples=record["num_examples"],
            num_tokens=record["num_tokens"],
            metrics=dict(record["training_metrics"]),
            steps=record["steps"],
        )
    else:
        record_path.unlink(missing_ok=True)
        training = train_adapter(
            base_model_dir,
            selected,
            config,
            init_adapter=init_adapter,
            preference_pairs=preference_pairs,
            progress=progress,
            checkpoint_dir=out / "checkpoint",
        )
    evaluation = evaluate(base_model_dir, training.adapter, heldout, config=config, verifiers=verifiers)
    metrics = {
        **training.metrics,
        **evaluation.metrics(),
        "num_examples": float(training.num_examples),
        "num_tokens": float(training.num_tokens),
        "steps": float(training.steps),
    }
    manifest = AdapterManifest(
        base_model_sha256=base_sha,
        parent_version=parent_version,
        dataset_manifest_sha256=dataset_manifest_sha256,
        metrics=metrics,
    )
    save_adapter(adapter_dir, training.adapter, config, manifest, base_model_dir=base_model_dir)
    manifest = load_adapter(adapter_dir).manifest
    if not resumed:
        record_path.write_text(
            json.dumps(
                {
                    "inputs_sha256": inputs,
                    "num_examples": training.num_examples,
                    "num_tokens": training.num_tokens,
                    "steps": training.steps,
                    "training_metrics": training.metrics,
                },
                sort_keys=True,
            )
        )
        shutil.rmtree(out / "checkpoint", ignore_errors=True)
    return RunOutcome(
        training=training,
        evaluation=evaluation,
        adapter_dir=adapter_dir,
        manifest=manifest,
        metrics=metrics,
        resumed=resumed,
    )
