"""The node's side of a federated round, without Flower: read the log, train, evaluate.

The ClientApp (``tenant_node/flower/client_app.py``) calls these and hands the results to the
egress guard; nothing here builds a reply. Trajectories are read from the node's own event
store (``TrajectoryRecorded`` events) and split into train / held-out by a seeded hash of
the trajectory id (``hermes_fed.training.dataset.split_heldout``), so the held-out set is
the same in every round.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hermes_fed.errors import NothingToTrainError
from hermes_fed.federation import messages as wire
from hermes_fed.federation.cells import Cell
from hermes_fed.federation.node_settings import NodeSettings
from hermes_fed.federation.round_spec import RoundSpec

if TYPE_CHECKING:
    from hermes_fed.store import SqlEventStore

logger = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class LocalData:
    """The node's trajectories, split and weighted; stays on the node.

    ``train`` holds ``(trajectory, weight, tier)``; ``manifest_sha256`` names the quality
    selection (a version id of the dataset, empty when ``selection="all"``).
    """

    train: tuple[tuple[Mapping[str, Any], float, str], ...]
    heldout: tuple[Mapping[str, Any], ...]
    num_events: int
    manifest_sha256: str = ""


def open_node_log(settings: NodeSettings) -> SqlEventStore:
    """The node's own event store, as its ``--node-config`` names it (the caller closes it)."""
    from hermes_fed.store import Keyring, open_store

    keyring = Keyring.from_file(settings.keyring) if settings.keyring else None
    return open_store(settings.store, settings.tenant_id, keyring=keyring,
                      schema=settings.store_schema or None)


def load_local_data(settings: NodeSettings) -> LocalData:
    """Read the node's ``TrajectoryRecorded`` events, split them (seeded, stable), select.

    The held-out split never enters training; with ``selection="quality"`` the train split
    is narrowed and weighted by ``hermes_fed.quality`` (tiers, near-duplicate removal), and
    trajectories with broken tool use are left out (see ``plan_training``: early usage is
    mostly such calls, and training on them taught the model its own failures).
    """
    from hermes_fed.quality.judges import broken_trajectories
    from hermes_fed.training.dataset import split_heldout

    store = open_node_log(settings)
    try:
        from hermes_fed.serving.assembly import assemble_trajectories

        num_events = 0

        def counted(events: Any) -> Any:
            nonlocal num_events
            for event in events:
                num_events += 1
                yield event

        # Whole trajectories: TrajectoryRecorded plus the gateway's TrajectoryExtended turns.
        trajectories: dict[str, Mapping[str, Any]] = dict(
            assemble_trajectories(counted(store.read())))
        split = split_heldout(sorted(trajectories), settings.heldout_fraction,
                              settings.split_seed)
        chosen = [(t, 1.0, "silver") for t in split.train]
        manifest_sha = ""
        if settings.selection == "quality" and split.train:
            from hermes_fed.quality.pipeline import select_from_store

            quality = settings.quality()

            # held-out and broken trajectories leave before selection, not after it: they
            # must not take the tier budgets' places (they used to crowd the goldens out)
            allowed = set(split.train) - broken_trajectories(
                {t: trajectories[t] for t in split.train})
            chosen = []
            if allowed:
                manifest = select_from_store(store, len(allowed), settings.split_seed, quality,
                                             only=allowed, exclude_used=settings.exclude_used)
                chosen = [(i.trajectory_id, i.weight, i.tier) for i in manifest.items]
                manifest_sha = manifest.sha256
    finally:
        store.close()
    return LocalData(train=tuple((trajectories[t], w, tier) for t, w, tier in chosen),
                     heldout=tuple(trajectories[t] for t in split.heldout),
                     num_events=num_events, manifest_sha256=manifest_sha)


@dataclass(frozen=True, slots=True)
class LocalUpdate:
    """A node's trained adapter and its numbers (metric values and counts only, no ids)."""

    adapter: dict[str, np.ndarray]
    num_examples: int
    metrics: dict[str, float]
    cells: tuple[Cell, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)


def _cells(result: Any, prefix: str) -> list[Cell]:
    """Per-example held-out log-likelihoods as mergeable cells (n, sum, sum of squares)."""
    base = np.array([e.base_loglik for e in result.examples], dtype=float)
    cells = [Cell(wire.cell_name(prefix, wire.BASE), len(base), float(base.sum()),
                  float((base ** 2).sum()))]
    if result.examples and all(e.adapter_loglik is not None for e in result.examples):
        adapted = np.array([e.adapter_loglik for e in result.examples], dtype=float)
        cells.append(Cell(wire.cell_name(prefix, wire.ADAPTED), len(adapted), float(adapted.sum()),
                          float((adapted ** 2).sum())))
    return cells


def train_locally(settings: NodeSettings, data: LocalData, spec: RoundSpec,
                  global_adapter: Mapping[str, np.ndarray]) -> LocalUpdate:
    """Evaluate the incoming global adapter on held-out data, then train from it.

    In frozen-a mode only the B factors are returned (A is the shared seed's, FFA-LoRA).
    """
    from hermes_fed.training.dataset import TrainingExample
    from hermes_fed.training.evaluation import evaluate
    from hermes_fed.training.trainer import train_adapter

    config = spec.training_config()
    examples = [TrainingExample(trajectory=t, weight=w, tier=tier) for t, w, tier in data.train]
    if not examples:
        raise NothingToTrainError("the node has no selected training trajectories")
    before: list[Cell] = []
    if data.heldout:
        before = _cells(evaluate(settings.base_model, global_adapter, data.heldout,
                                 config=config, max_new_tokens=1), wire.HELDOUT_BEFORE)
    result = train_adapter(settings.base_model, examples, config, init_adapter=global_adapter)
    adapter = result.adapter
    if spec.mode == "frozen-a":
        adapter = {k: v for k, v in adapter.items() if ".lora_A." not in k}
    metrics = {
        wire.TRAIN_LOSS: float(result.metrics["train_loss_mean"]),
        wire.TRAIN_LOSS_LAST: float(result.metrics["train_loss_last"]),
        wire.TRAIN_SECONDS: float(result.metrics["train_seconds"]),
        wire.TRAIN_TOKENS: float(result.num_tokens),
    }
    # Examples longer than max-length are cut at the end, and those left with no assistant
    # token are dropped: counted, so the coordinator can say "raise --max-length".
    counts = {wire.COUNT_SELECTED: len(examples),
              wire.TRUNCATED_EXAMPLES: int(result.metrics.get("num_truncated", 0))}
    if len(examples) > result.num_examples:
        logger.warning("event=examples_dropped selected=%d trained=%d max_length=%d",
                       len(examples), result.num_examples, config.max_length)
    return LocalUpdate(adapter=adapter, num_examples=result.num_examples, metrics=metrics,
                       cells=tuple(before), counts=counts)


def evaluate_locally(settings: NodeSettings, data: LocalData, spec: RoundSpec,
                     adapter: Mapping[str, np.ndarray]) -> list[Cell]:
    """Held-out log-likelihood of base and base+adapter, as cells (k_min applies)."""
    from hermes_fed.training.evaluation import evaluate

    if not data.heldout:
        return []
    result = evaluate(settings.base_model, adapter, data.heldout, config=spec.training_config(),
                      max_new_tokens=1)
    return _cells(result, wire.HELDOUT)
