"""The node's side of a federated round, without Flower: read the log, train, evaluate.

The ClientApp (``tenant_node/flower/client_app.py``) calls these and hands the results to the
egress guard; nothing here builds a reply. Trajectories are read from the node's own event
store (``TrajectoryRecorded`` events) and split into train / held-out by a seeded hash of
the trajectory id (``hermes_fed.training.dataset.split_heldout``), so the held-out set is
the same in every round.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
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
    selection (a version id of the dataset, empty when ``selection="all"``);
    ``log_position`` is the position of the last event read (trajectories recorded after it
    are not in this data).
    """

    train: tuple[tuple[Mapping[str, Any], float, str], ...]
    heldout: tuple[Mapping[str, Any], ...]
    num_events: int
    manifest_sha256: str = ""
    log_position: int = 0


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

        num_events = log_position = 0

        def counted(events: Any) -> Any:
            nonlocal num_events, log_position
            for event in events:
                num_events += 1
                log_position = event.position
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
                     num_events=num_events, manifest_sha256=manifest_sha,
                     log_position=log_position)


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


# Namespace of the event id of a round's FederatedRoundTrained: a re-delivered round
# appends nothing (the store's append is idempotent by event id).
_ROUND_NAMESPACE = uuid.UUID("5f0c2d7e-8a41-4b9e-9c3d-6e1f2a7b4c90")


def record_round(settings: NodeSettings, spec: RoundSpec, data: LocalData,
                 update: LocalUpdate, flower_run_id: int) -> int:
    """Record in the node's own log that it trained for this round; returns the position.

    ``FederatedRoundTrained`` (ids, counts, hashes, versions only): the node's AutoTrigger
    reads it as its last training, and it marks no trajectory used (the next round of the
    cycle selects the same ones). The time is the node's clock
    (:func:`~hermes_fed.clock.current_clock`: a simulation shifts it as the coordinator's;
    the round spec carries no time). The store's own errors propagate.
    """
    from hermes_fed.clock import current_clock
    from hermes_fed.events import new_event
    from hermes_fed.events.training import FederatedRoundTrained

    n_by_tier = Counter(tier for _, _, tier in data.train)
    record = FederatedRoundTrained(
        flower_run_id=int(flower_run_id), round=spec.round,
        parent_version=spec.parent_version or None,
        dataset_manifest_sha256=data.manifest_sha256, num_examples=update.num_examples,
        n_by_tier=dict(sorted(n_by_tier.items())), log_position=data.log_position)
    stream = f"federated-{int(flower_run_id)}-{spec.round}"
    event = new_event(record, stream_id=stream, event_id=uuid.uuid5(_ROUND_NAMESPACE, stream),
                      metadata={"actor": "node.federated"}, occurred_at=current_clock().now())
    store = open_node_log(settings)
    try:
        position = store.append([event])[0].position
    finally:
        store.close()
    logger.info("event=federated_round_recorded round=%d examples=%d position=%d",
                spec.round, update.num_examples, position)
    return position
