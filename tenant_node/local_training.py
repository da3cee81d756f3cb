"""The node's local training run: selection -> dataset -> LoRA training -> evaluation -> events.

Composition only; every decision is made by the library it calls:
``hermes_fed.quality`` (scores, tiers, selection manifest, preference pairs) and
``hermes_fed.training`` (held-out split, trainer, evaluation, adapter I/O). The run is
recorded in the node's own log as ``TrainingDataSelected`` then ``TrainingRunStarted`` and
``TrainingRunCompleted`` / ``TrainingRunFailed``.

Resumable: the run id is derived from the manifest, the configuration and the parent, so a
re-run after a crash reuses the same output directory (``run_training`` resumes from its
checkpoint or its finished adapter) and the same event ids (appends are idempotent).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from hermes_fed.errors import NothingToTrainError, TrainingError
from hermes_fed.events import NewEvent
from hermes_fed.events.training import TrainingRunCompleted, TrainingRunFailed, TrainingRunStarted
from hermes_fed.quality import read_model as rm
from hermes_fed.quality.config import QualityConfig
from hermes_fed.quality.pipeline import quality_runner, record_selection
from hermes_fed.quality.selection import SelectionManifest, select_training_data
from hermes_fed.store import SqlEventStore
from hermes_fed.training.config import LoraTrainingConfig
from hermes_fed.training.dataset import (
    PreferenceExample,
    TrainingExample,
    examples_from_manifest,
    split_heldout,
)
from hermes_fed.training.run import RunOutcome, run_training
from hermes_fed.training.trainer import Progress

log = logging.getLogger(__name__)
_RUN_NAMESPACE = uuid.UUID("b3e0c7a2-58f4-4d0e-9b4e-2f7f6c1d9a31")


@dataclass(frozen=True, slots=True)
class TrainingPlan:
    """What a run will train on; built from the log, never leaves the node."""

    manifest: SelectionManifest
    selected: list[TrainingExample]
    heldout: list[Mapping[str, Any]]
    pairs: list[PreferenceExample]


def load_trajectories(store: SqlEventStore) -> dict[str, Mapping[str, Any]]:
    """Every readable trajectory by id, whole: its ``TrajectoryRecorded`` plus the gateway's
    ``TrajectoryExtended`` turns (erased subjects' trajectories are gone)."""
    from hermes_fed.serving.assembly import TRAJECTORY_TYPES, assemble_trajectories

    return dict(assemble_trajectories(store.read(types=TRAJECTORY_TYPES)))


def plan_training(
    store: SqlEventStore,
    *,
    target_n: int,
    seed: int = 0,
    heldout_fraction: float = 0.2,
    split_seed: int = 0,
    quality: QualityConfig | None = None,
) -> TrainingPlan:
    """Select training data from the quality read model, keeping the held-out split out.

    The held-out split is a seeded hash of trajectory ids (stable across rounds), and its
    trajectories are removed from the candidates *before* selection, so the manifest that
    is recorded is exactly what is trained on. So are trajectories in which the agent
    visibly failed with its tools (a malformed call, an undeclared tool, a tool error left
    unhandled: ``hermes_fed.quality.judges.structural_failures``): a user who said nothing
    leaves such a trajectory at the silver floor, and a round of early usage is mostly
    them, so training on them taught the model its own broken calls (measured in the demo:
    the candidate kept naming a made-up tool while its held-out likelihood improved).
    """
    from hermes_fed.quality.judges import broken_trajectories

    trajectories = load_trajectories(store)
    if not trajectories:
        raise TrainingError(f"tenant {store.tenant_id}: the log holds no trajectories to train on")
    split = split_heldout(sorted(trajectories), heldout_fraction, split_seed)
    heldout_ids = set(split.heldout)
    broken = broken_trajectories(trajectories)
    runner = quality_runner(store, quality)
    with runner.engine.connect() as conn:
        candidates = [
            c
            for c in rm.load_candidates(conn)
            if c.trajectory_id in trajectories and c.trajectory_id not in heldout_ids
            and c.trajectory_id not in broken
        ]
        pair_rows = conn.execute(
            sa.select(rm.preference_pairs.c.rejected_id, rm.preference_pairs.c.chosen_id)
        ).all()
    manifest = select_training_data(candidates, target_n, seed, quality)
    if not manifest.items:
        raise NothingToTrainError(
            f"tenant {store.tenant_id}: no new scored trajectories to select "
            f"({len(trajectories)} recorded, {len(heldout_ids)} held out, {len(broken)} with broken "
            "tool use, the rest already trained on or not yet scored)"
        )
    pairs = [
        PreferenceExample(rejected=trajectories[r], chosen=trajectories[c])
        for r, c in pair_rows
        if r in trajectories and c in trajectories and not {r, c} & heldout_ids
    ]
    return TrainingPlan(
        manifest=manifest,
        selected=examples_from_manifest(manifest.items, trajectories),
        heldout=[trajectories[t] for t in split.heldout],
        pairs=pairs,
    )


def run_id_for(plan: TrainingPlan, config: LoraTrainingConfig, parent_version: str | None) -> str:
    body = json.dumps([plan.manifest.sha256, config.to_dict(), parent_version], sort_keys=True, default=str)
    return "run-" + hashlib.sha256(body.encode()).hexdigest()[:16]


def _event(run_id: str, kind: str, data: Mapping[str, Any]) -> NewEvent:
    return NewEvent(
        stream_id=f"training-{run_id}",
        type=kind,
        data=dict(data),
        event_id=uuid.uuid5(_RUN_NAMESPACE, f"{run_id}/{kind}"),
        metadata={"actor": "node.train"},
    )


def train_on_node(
    store: SqlEventStore,
    plan: TrainingPlan,
    *,
    base_model_dir: str | Path,
    output_root: str | Path,
    config: LoraTrainingConfig,
    parent_version: str | None = None,
    init_adapter: Mapping[str, np.ndarray] | None = None,
    progress: Progress | None = None,
) -> tuple[str, RunOutcome]:
    """Record the selection, train, evaluate, and record the outcome; returns (run id, outcome)."""
    run_id = run_id_for(plan, config, parent_version)
    n_by_tier = dict(plan.manifest.n_by_tier)
    common = {
        "run_id": run_id,
        "base_model": str(base_model_dir),
        "parent_version": parent_version,
        "dataset_manifest_sha256": plan.manifest.sha256,
        "n_by_tier": n_by_tier,
    }
    record_selection(store, plan.manifest)
    store.append([_event(run_id, TrainingRunStarted.TYPE, {**common, "config": config.to_dict()})])
    log.info(
        "event=training_started tenant=%s run_id=%s selected=%d heldout=%d pairs=%d",
        store.tenant_id,
        run_id,
        len(plan.selected),
        len(plan.heldout),
        len(plan.pairs),
    )
    try:
        outcome = run_training(
            base_model_dir,
            plan.selected,
            plan.heldout,
            config,
            Path(output_root) / run_id,
            init_adapter=init_adapter,
            parent_version=parent_version,
            dataset_manifest_sha256=plan.manifest.sha256,
            preference_pairs=plan.pairs,
            progress=progress,
        )
    except Exception as exc:
        store.append(
            [_event(run_id, TrainingRunFailed.TYPE, {**common, "error": f"{type(exc).__name__}: {exc}"})]
        )
        raise
    metrics = {k: float(v) for k, v in outcome.metrics.items()}
    store.append(
        [
            _event(
                run_id,
                TrainingRunCompleted.TYPE,
                {**common, "metrics": metrics, "adapter_sha256": outcome.manifest.adapter_sha256},
            )
        ]
    )
    log.info(
        "event=training_completed tenant=%s run_id=%s resumed=%s", store.tenant_id, run_id, outcome.resumed
    )
    return run_id, outcome
