"""The node's side of a federated round, without Flower: read the log, train, evaluate.

The ClientApp (``tenant_node/client_app.py``) calls these and hands the results to the
egress guard; nothing here builds a reply. Trajectories are read from the node's own event
store (``TrajectoryRecorded`` events) and split into train / held-out by a seeded hash of
the trajectory id (``hermes_fed.training.dataset.split_heldout``), so the held-out set is
the same in every round.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from hermes_fed.errors import ConfigError, FederationError
from tenant_node.egress import Cell

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """A node's federation settings, from ``flower-supernode --node-config``."""

    tenant_id: str = field(metadata={"help": "the tenant this node serves (node-config tenant-id)"})
    store: str = field(metadata={"help": "the node's event-store URL (node-config store)"})
    base_model: str = field(metadata={"help": "local HF base-model dir (node-config base-model)"})
    keyring: str = field(default="", metadata={"help": "key-ring file of the store; '' = none"})
    k_min: int = field(default=20, metadata={"help": "egress small-cell threshold"})
    heldout_fraction: float = field(default=0.2, metadata={"help": "share kept for evaluation"})
    split_seed: int = field(default=0, metadata={"help": "seed of the train/held-out split"})
    selection: str = field(default="quality", metadata={
        "help": "quality: train on the quality pipeline's selection of the train split (tier "
                "weights, near-duplicates out); all: every train trajectory with weight 1"})
    dedupe_threshold: float = field(default=0.8, metadata={
        "help": "MinHash similarity at which two trajectories are near-duplicates "
                "(SelectionConfig.dedupe_threshold); 1.0 keeps all but exact duplicates"})

    def __post_init__(self) -> None:
        for name in ("tenant_id", "store", "base_model"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"node-config {name.replace('_', '-')} must be a non-empty "
                                  f"string, got {getattr(self, name)!r}")
        if self.selection not in ("quality", "all"):
            raise ConfigError(f"node-config selection must be 'quality' or 'all', "
                              f"got {self.selection!r}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ConfigError(f"node-config heldout-fraction must be in (0, 1), "
                              f"got {self.heldout_fraction!r}")
        if not 0.0 < float(self.dedupe_threshold) <= 1.0:
            raise ConfigError(f"node-config dedupe-threshold must be in (0, 1], "
                              f"got {self.dedupe_threshold!r}")

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any]) -> NodeSettings:
        known = {f.name.replace("_", "-"): f.name for f in fields(cls)}
        values = {known[k]: v for k, v in node_config.items() if k in known}
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"node-config is missing a key: {exc}") from None


@dataclass(frozen=True, slots=True)
class RoundSpec:
    """What the coordinator asked for, from the message's ``config`` ConfigRecord."""

    round: int
    mode: str
    parent_version: str
    r: int
    alpha: float
    lr: float
    max_steps: int
    batch_size: int
    max_length: int
    seed: int
    frozen_a_seed: int
    lr_schedule: str = "constant"  # what a coordinator that sends no schedule ran
    warmup_steps: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RoundSpec:
        try:
            return cls(round=int(config["round"]), mode=str(config["mode"]),
                       lr_schedule=str(config.get("lr-schedule", "constant")),
                       warmup_steps=int(config.get("warmup-steps", 0)),
                       parent_version=str(config["parent-version"]), r=int(config["r"]),
                       alpha=float(config["alpha"]), lr=float(config["lr"]),
                       max_steps=int(config["max-steps"]),
                       batch_size=int(config["batch-size"]),
                       max_length=int(config["max-length"]), seed=int(config["seed"]),
                       frozen_a_seed=int(config["frozen-a-seed"]))
        except (KeyError, ValueError) as exc:
            raise FederationError(f"round config is missing or bad: {exc!r}") from None

    def training_config(self) -> Any:
        from hermes_fed.training.config import LoraTrainingConfig

        return LoraTrainingConfig(r=self.r, alpha=self.alpha, lr=self.lr,
                                  lr_schedule=self.lr_schedule, warmup_steps=self.warmup_steps,
                                  max_steps=self.max_steps, batch_size=self.batch_size,
                                  max_length=self.max_length, seed=self.seed, device="cpu",
                                  frozen_a=self.mode == "frozen-a",
                                  frozen_a_seed=self.frozen_a_seed)


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


def load_local_data(settings: NodeSettings) -> LocalData:
    """Read the node's ``TrajectoryRecorded`` events, split them (seeded, stable), select.

    The held-out split never enters training; with ``selection="quality"`` the train split
    is narrowed and weighted by ``hermes_fed.quality`` (tiers, near-duplicate removal), and
    trajectories with broken tool use are left out (see ``plan_training``: early usage is
    mostly such calls, and training on them taught the model its own failures).
    """
    from hermes_fed.quality.judges import broken_trajectories
    from hermes_fed.store import Keyring, open_store
    from hermes_fed.training.dataset import split_heldout

    keyring = Keyring.from_file(settings.keyring) if settings.keyring else None
    store = open_store(settings.store, settings.tenant_id, keyring=keyring)
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
            from hermes_fed.quality.config import QualityConfig, SelectionConfig
            from hermes_fed.quality.pipeline import select_from_store

            quality = QualityConfig(selection=SelectionConfig(
                dedupe_threshold=float(settings.dedupe_threshold)))

            # held-out and broken trajectories leave before selection, not after it: they
            # must not take the tier budgets' places (they used to crowd the goldens out)
            allowed = set(split.train) - broken_trajectories(
                {t: trajectories[t] for t in split.train})
            chosen = []
            if allowed:
                manifest = select_from_store(store, len(allowed), settings.split_seed, quality,
                                             only=allowed)
                chosen = [(i.trajectory_id, i.weight, i.tier) for i in manifest.items]
                manifest_sha = manifest.sha256
    finally:
        store.close()
    return LocalData(train=tuple((trajectories[t], w, tier) for t, w, tier in chosen),
                     heldout=tuple(trajectories[t] for t in split.heldout),
                     num_events=num_events, manifest_sha256=manifest_sha)


@dataclass(frozen=True, slots=True)
class LocalUpdate:
    """A node's trained adapter and its numbers (metric values only, no ids)."""

    adapter: dict[str, np.ndarray]
    num_examples: int
    metrics: dict[str, float]
    cells: tuple[Cell, ...] = ()


def _cells(result: Any, prefix: str) -> list[Cell]:
    """Per-example held-out log-likelihoods as mergeable cells (n, sum, sum of squares)."""
    base = np.array([e.base_loglik for e in result.examples], dtype=float)
    cells = [Cell(f"{prefix}.base", len(base), float(base.sum()), float((base ** 2).sum()))]
    if result.examples and all(e.adapter_loglik is not None for e in result.examples):
        adapted = np.array([e.adapter_loglik for e in result.examples], dtype=float)
        cells.append(Cell(f"{prefix}.adapter", len(adapted), float(adapted.sum()),
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
        raise FederationError("the node has no training trajectories")
    before: list[Cell] = []
    if data.heldout:
        before = _cells(evaluate(settings.base_model, global_adapter, data.heldout,
                                 config=config, max_new_tokens=1), "heldout-before")
    result = train_adapter(settings.base_model, examples, config, init_adapter=global_adapter)
    adapter = result.adapter
    if spec.mode == "frozen-a":
        adapter = {k: v for k, v in adapter.items() if ".lora_A." not in k}
    metrics = {
        "train-loss": float(result.metrics["train_loss_mean"]),
        "train-loss-last": float(result.metrics["train_loss_last"]),
        "train-seconds": float(result.metrics["train_seconds"]),
        "train-tokens": float(result.num_tokens),
    }
    return LocalUpdate(adapter=adapter, num_examples=result.num_examples, metrics=metrics,
                       cells=tuple(before))


def evaluate_locally(settings: NodeSettings, data: LocalData, spec: RoundSpec,
                     adapter: Mapping[str, np.ndarray]) -> list[Cell]:
    """Held-out log-likelihood of base and base+adapter, as cells (k_min applies)."""
    from hermes_fed.training.evaluation import evaluate

    if not data.heldout:
        return []
    result = evaluate(settings.base_model, adapter, data.heldout, config=spec.training_config(),
                      max_new_tokens=1)
    return _cells(result, "heldout")
