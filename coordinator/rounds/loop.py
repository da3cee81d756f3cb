"""Federated LoRA rounds over a Flower ``Grid``: send, collect, aggregate, publish, evaluate.

Orchestration only; the maths is ``hermes_fed.aggregation``. One round:

1. ``train`` to every node: the global adapter (``adapter``) and the round's ``config``;
2. replies are collected (errors are reported by node, never their text beyond Flower's
   error code); a round needs ``min-nodes`` good replies;
3. ``make_aggregator(mode).aggregate(updates, scale=alpha/r, previous=global)``;
4. the new adapter is published to the registry (``AdapterVersionPublished`` with lineage);
5. ``evaluate`` of the new adapter on every node's held-out data;
6. ``RoundStarted`` / ``RoundCompleted`` (or ``RoundFailed``) go to the coordinator's log,
   the report to ``<coordinator dir>/reports/run-<run id>.json``.

Replies are pulled every ``poll-interval`` seconds rather than by ``Grid.send_and_receive``
(which sleeps 3 s between pulls).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from coordinator.logs.registry import AdapterRegistry, AdapterVersion
from coordinator.rounds.report import NodeRoundReport, RoundReport, Timing, render_table
from hermes_fed.errors import ConfigError, FederationError

logger = logging.getLogger(__name__)

MODES = ("fedavg", "exact", "frozen-a")
CONFIG_ENV = "HERMES_FED_COORDINATOR_CONFIG"


def merged_run_config(run_config: Mapping[str, Any],
                      env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The coordinator's settings file (``$HERMES_FED_COORDINATOR_CONFIG``) under the run config."""
    environ = os.environ if env is None else env
    merged: dict[str, Any] = {}
    if path := environ.get(CONFIG_ENV):
        try:
            merged.update(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{CONFIG_ENV}={path} is not a readable JSON file: "
                              f"{exc}") from None
    merged.update(run_config)
    return merged


def _lora_default(name: str) -> Any:
    """A ``LoraTrainingConfig`` default, so a round trains as a node's own run would."""
    from hermes_fed.training.config import LoraTrainingConfig

    return LoraTrainingConfig.__dataclass_fields__[name].default


@dataclass(frozen=True, slots=True)
class RoundsConfig:
    """The ServerApp's run config (``[tool.flwr.app.config]`` + ``flwr run -c``)."""

    coordinator_dir: str = field(metadata={"help": "registry, coordinator log and reports"})
    base_model: str = field(metadata={"help": "base-model dir (the nodes use the same model)"})
    num_server_rounds: int = field(default=1, metadata={"help": "rounds in this run"})
    mode: str = field(default="frozen-a", metadata={"help": "fedavg | exact | frozen-a"})
    min_nodes: int = field(default=1, metadata={"help": "nodes to wait for / replies needed"})
    r: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (scale alpha/r)"})
    lr: float = field(default=1e-3, metadata={"help": "local AdamW learning rate"})
    max_steps: int = field(default=4, metadata={"help": "local optimizer steps per round"})
    lr_schedule: str = field(default_factory=lambda: _lora_default("lr_schedule"), metadata={
        "help": "local learning-rate schedule: constant | cosine | linear "
                "(LoraTrainingConfig.lr_schedule; restarts every round)"})
    warmup_steps: int = field(default_factory=lambda: _lora_default("warmup_steps"), metadata={
        "help": "local linear warmup steps of each round (LoraTrainingConfig.warmup_steps)"})
    batch_size: int = field(default=8, metadata={"help": "local batch size"})
    max_length: int = field(default=256, metadata={"help": "tokens per example"})
    seed: int = field(default=0, metadata={"help": "seed of local training and LoRA init"})
    frozen_a_seed: int = field(default=0, metadata={"help": "shared seed of A (frozen-a)"})
    clip_norm: float = field(default=0.0, metadata={"help": "update-norm bound; 0 = none"})
    round_timeout: float = field(default=600.0, metadata={"help": "seconds per exchange"})
    node_wait: float = field(default=120.0, metadata={"help": "seconds to wait for min-nodes"})
    poll_interval: float = field(default=0.2, metadata={"help": "seconds between reply pulls"})
    evaluate: int = field(default=1, metadata={"help": "1: evaluate the new adapter"})
    ab_looks: int = field(default=1, metadata={"help": "1: look at open A/B tests after a round"})
    ab_only: int = field(default=0, metadata={"help": "1: no training, one A/B look per round"})
    sim_days: float = field(default=0.0, metadata={
        "help": "simulation clock: A/B looks are dated this many days ahead (a simulator "
                "compressing weeks of traffic into minutes); 0 in production"})

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"run config mode must be one of {MODES}, got {self.mode!r}")
        for name in ("num_server_rounds", "min_nodes", "r", "max_steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"run config {name.replace('_', '-')} must be >= 1, "
                                  f"got {getattr(self, name)!r}")
        if not (math.isfinite(self.sim_days) and self.sim_days >= 0):
            raise ConfigError(f"run config sim-days must be >= 0, got {self.sim_days!r}")
        if not self.coordinator_dir or not self.base_model:
            raise ConfigError("run config coordinator-dir and base-model are required, got "
                              f"{self.coordinator_dir!r} and {self.base_model!r}")

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any],
                        env: Mapping[str, str] | None = None) -> RoundsConfig:
        """The run config over the coordinator's file (``$HERMES_FED_COORDINATOR_CONFIG``).

        Flower refuses ``flwr run -c`` keys that ``[tool.flwr.app.config]`` does not
        declare, so the coordinator's own settings (its directory, the base model, the
        training knobs) come from a JSON file named by the SuperLink's environment, and
        the declared keys (``mode``, ``num-server-rounds``) from the run config.
        """
        merged = merged_run_config(run_config, env)
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in merged.items():
            name = key.replace("-", "_")
            if name in types:
                kind = {"int": int, "float": float, "str": str}[str(types[name])]
                values[name] = kind(value)
        return cls(**values)

    def training_config(self) -> Any:
        from hermes_fed.training.config import LoraTrainingConfig

        return LoraTrainingConfig(r=self.r, alpha=self.alpha, lr=self.lr,
                                  lr_schedule=self.lr_schedule, warmup_steps=self.warmup_steps,
                                  max_steps=self.max_steps, batch_size=self.batch_size,
                                  max_length=self.max_length, seed=self.seed, device="cpu",
                                  frozen_a=self.mode == "frozen-a",
                                  frozen_a_seed=self.frozen_a_seed)

    def message_config(self, round_number: int, parent: str) -> ConfigRecord:
        return ConfigRecord({
            "round": round_number, "mode": self.mode, "parent-version": parent,
            "r": self.r, "alpha": float(self.alpha), "lr": float(self.lr),
            "max-steps": self.max_steps, "lr-schedule": self.lr_schedule,
            "warmup-steps": self.warmup_steps, "batch-size": self.batch_size,
            "max-length": self.max_length, "seed": self.seed,
            "frozen-a-seed": self.frozen_a_seed,
        })


def payload_bytes(message: Message) -> int:
    """Bytes of a message's content as Flower ships it (its deflated objects)."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(message).values())


def wait_for_nodes(grid: Grid, count: int, timeout: float, interval: float = 0.2) -> list[int]:
    """Node ids once ``count`` SuperNodes are connected (polled, not slept for)."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes
        if time.monotonic() > deadline:
            raise FederationError(f"{len(nodes)} of {count} nodes connected after {timeout:.0f} s")
        time.sleep(interval)


def exchange(grid: Grid, messages: Sequence[Message], *, timeout: float,
             interval: float) -> tuple[dict[int, Message], float]:
    """Push ``messages`` and pull replies until all arrive or ``timeout``; by node id."""
    started = time.monotonic()
    ids = list(grid.push_messages(messages))
    wanted = {mid: m.metadata.dst_node_id for mid, m in zip(ids, messages, strict=True)}
    replies: dict[int, Message] = {}
    while len(replies) < len(wanted) and time.monotonic() - started < timeout:
        for reply in grid.pull_messages([i for i in wanted if wanted[i] not in replies]):
            node = wanted.get(reply.metadata.reply_to_message_id)
            if node is not None:
                replies[node] = reply
        if len(replies) < len(wanted):
            time.sleep(interval)
    return replies, time.monotonic() - started


def _adapter_record(tensors: Mapping[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in sorted(tensors.items())})


def initial_adapter(cfg: RoundsConfig, registry: AdapterRegistry) -> AdapterVersion:
    """The latest compatible registry version, or a fresh seeded init published as one."""
    latest = registry.latest()
    frozen = cfg.mode == "frozen-a"
    if latest is not None:
        lin = latest.lineage
        if (lin.get("r") == cfg.r and bool(lin.get("frozen_a")) == frozen
                and (not frozen or lin.get("frozen_a_seed") == cfg.frozen_a_seed)
                and lin.get("base_model") == cfg.base_model):
            return latest
    from hermes_fed.training.adapter import adapter_state, build_peft_model, load_base_model

    base, _ = load_base_model(cfg.base_model, "cpu")
    tensors = adapter_state(build_peft_model(base, cfg.training_config()))
    lineage = {"round": 0, "mode": "init", "participating_nodes": [], "per_node": {},
               "residual": None, **_shape_lineage(cfg)}
    return registry.publish(tensors, parent=None, lineage=lineage,
                            training_config=cfg.training_config(), base_model_dir=cfg.base_model)


def _shape_lineage(cfg: RoundsConfig) -> dict[str, Any]:
    return {"r": cfg.r, "alpha": cfg.alpha, "frozen_a": cfg.mode == "frozen-a",
            "frozen_a_seed": cfg.frozen_a_seed, "base_model": cfg.base_model,
            "max_length": cfg.max_length}


def _metric(reply: Message | None, name: str) -> float | None:
    if reply is None or reply.has_error() or "metrics" not in reply.content:
        return None
    value = reply.content.metric_records["metrics"].get(name)
    return float(value) if isinstance(value, int | float) else None


def _version(reply: Message | None, key: str) -> str | None:
    if reply is None or reply.has_error() or "versions" not in reply.content:
        return None
    value = reply.content.config_records["versions"].get(key)
    return value if isinstance(value, str) else None


def _cell_mean(reply: Message | None, cell: str) -> float | None:
    """Mean of a sufficient-statistics cell (``<cell>.sum / <cell>.n``) in a reply."""
    n, total = _metric(reply, f"{cell}.n"), _metric(reply, f"{cell}.sum")
    return total / n if n and total is not None else None


def _error(reply: Message | None) -> str | None:
    if reply is None:
        return "no reply (timeout)"
    if reply.has_error():
        return f"error code {reply.error.code}"
    if "adapter" not in reply.content:
        return "no adapter (suppressed: fewer than k_min examples)"
    return None


class TrainExchange(NamedTuple):
    """What one train exchange brought back: the usable updates and the bytes both ways."""

    replies: dict[int, Message]
    updates: list[Any]  # ClientUpdate
    down: dict[int, int]
    train_s: float


def train_exchange(grid: Grid, cfg: RoundsConfig, nodes: Sequence[int],
                   parent: Mapping[str, np.ndarray], config: ConfigRecord, round_number: int,
                   *, weighted: bool = True) -> TrainExchange:
    """Send the parent adapter to every node, collect each usable adapter as a
    ``ClientUpdate`` (weighted by the node's example count, or equally with
    ``weighted=False``, as tenant-level DP needs); refuse a round below ``min_nodes``."""
    from hermes_fed.aggregation.records import ClientUpdate

    msgs = [Message(RecordDict({"adapter": _adapter_record(parent), "config": config}),
                    dst_node_id=n, message_type="train", group_id=str(round_number))
            for n in nodes]
    down = {m.metadata.dst_node_id: payload_bytes(m) for m in msgs}
    replies, train_s = exchange(grid, msgs, timeout=cfg.round_timeout, interval=cfg.poll_interval)
    updates = []
    for n in nodes:
        reply = replies.get(n)
        if _error(reply) is None and reply is not None:
            record = reply.content.array_records["adapter"]
            weight = int(_metric(reply, "num-examples") or 0) if weighted else 1
            updates.append(ClientUpdate(node_id=str(n), num_examples=weight,
                                        tensors={k: a.numpy() for k, a in record.items()}))
    if len(updates) < cfg.min_nodes:
        raise FederationError(f"round {round_number}: {len(updates)} usable replies, "
                              f"need {cfg.min_nodes}: "
                              + "; ".join(f"node {n}: {_error(replies.get(n))}" for n in nodes))
    return TrainExchange(replies, updates, down, train_s)


class Published(NamedTuple):
    """The version a round published and what evaluating it brought back."""

    version: AdapterVersion
    evaluations: dict[int, Message]
    publish_s: float
    eval_s: float


def publish_and_evaluate(grid: Grid, cfg: RoundsConfig, registry: AdapterRegistry,
                         tensors: Mapping[str, np.ndarray], parent: AdapterVersion,
                         lineage: Mapping[str, Any], nodes: Sequence[int], round_number: int,
                         down: dict[int, int]) -> Published:
    """Publish the aggregate with its lineage, then (``cfg.evaluate``) send it to every node
    for its held-out evaluation; the evaluate messages' bytes are added to ``down``."""
    started = time.monotonic()
    version = registry.publish(tensors, parent=parent.version,
                               lineage=json.loads(json.dumps(lineage, default=float)),
                               training_config=cfg.training_config(),
                               base_model_dir=cfg.base_model)
    publish_s = time.monotonic() - started
    evaluations: dict[int, Message] = {}
    eval_s = 0.0
    if cfg.evaluate:
        eval_msgs = [Message(RecordDict({"adapter": _adapter_record(tensors),
                                         "config": cfg.message_config(round_number,
                                                                      version.version)}),
                             dst_node_id=n, message_type="evaluate", group_id=str(round_number))
                     for n in nodes]
        for m in eval_msgs:
            down[m.metadata.dst_node_id] = down.get(m.metadata.dst_node_id, 0) + payload_bytes(m)
        evaluations, eval_s = exchange(grid, eval_msgs, timeout=cfg.round_timeout,
                                       interval=cfg.poll_interval)
    return Published(version, evaluations, publish_s, eval_s)


def run_round(grid: Grid, cfg: RoundsConfig, registry: AdapterRegistry, nodes: Iterable[int],
              parent: AdapterVersion, round_number: int, run_id: int) -> RoundReport:
    """One federated round; returns its report (and publishes the new version)."""
    from hermes_fed.aggregation.base import make_aggregator
    from hermes_fed.aggregation.records import AggregationConfig

    nodes = list(nodes)
    parent_tensors = registry.load(parent.version)
    replies, updates, down, train_s = train_exchange(
        grid, cfg, nodes, parent_tensors, cfg.message_config(round_number, parent.version),
        round_number)
    started = time.monotonic()
    agg_cfg = AggregationConfig(clip_norm=cfg.clip_norm or None, rank=cfg.r)
    result = make_aggregator(cfg.mode, agg_cfg).aggregate(updates, scale=cfg.alpha / cfg.r,
                                                          previous=parent_tensors)
    aggregation_s = time.monotonic() - started
    node_reports = {nr.node_id: nr for nr in result.report.nodes}
    per_node = {u.node_id: {"num_examples": u.num_examples,
                            "train_loss": _metric(replies.get(int(u.node_id)), "train-loss"),
                            "update_norm": node_reports[u.node_id].update_norm,
                            "dataset_manifest": _version(replies.get(int(u.node_id)),
                                                         "dataset-manifest")}
                for u in updates}
    lineage = {"round": round_number, "run_id": str(run_id), "mode": cfg.mode,
               "participating_nodes": [u.node_id for u in updates], "per_node": per_node,
               "residual": result.report.residual, "fedavg_error": result.report.fedavg_error,
               **_shape_lineage(cfg)}
    version, evaluations, publish_s, eval_s = publish_and_evaluate(
        grid, cfg, registry, result.tensors, parent, lineage, nodes, round_number, down)
    reports = []
    for n in nodes:
        reply, ev = replies.get(n), evaluations.get(n)
        nr = node_reports.get(str(n))
        up = (payload_bytes(reply) if reply is not None else 0) + (
            payload_bytes(ev) if ev is not None else 0)
        heldout_n = _metric(ev, "heldout.adapter.n")
        reports.append(NodeRoundReport(
            node_id=str(n), num_examples=int(_metric(reply, "num-examples") or 0),
            train_loss=_metric(reply, "train-loss"),
            update_norm=nr.update_norm if nr else None, bytes_down=down[n], bytes_up=up,
            handler_seconds=_metric(reply, "handler-seconds"),
            train_seconds=_metric(reply, "train-seconds"),
            heldout_before=_cell_mean(reply, "heldout-before.adapter"),
            heldout_after=_cell_mean(ev, "heldout.adapter"),
            heldout_n=int(heldout_n) if heldout_n is not None else None,
            outlier=bool(nr.outlier) if nr else False, error=_error(reply)))
    timing = Timing(
        train_exchange=train_s, evaluate_exchange=eval_s, aggregation=aggregation_s,
        local_training_max=max((r.train_seconds or 0.0) for r in reports),
        node_handler_max=max((r.handler_seconds or 0.0) for r in reports), publish=publish_s)
    return RoundReport(run_id=run_id, round=round_number, mode=cfg.mode,
                       parent_version=parent.version, version=version.version,
                       nodes=tuple(reports), residual=result.report.residual,
                       fedavg_error=result.report.fedavg_error, timing=timing,
                       aggregation=result.report.to_dict())


def _log_round(registry: AdapterRegistry, kind: type, stream_id: str, **data: Any) -> None:
    """Append a round event; ``kind`` is a catalog record class (built from ``data``)."""
    from hermes_fed.events import new_event

    record = cast(Any, kind)(**data)  # catalog records are dataclasses made by @event_type
    registry.store.append([new_event(record, stream_id=stream_id)])


def run_rounds(grid: Grid, run_config: Mapping[str, Any], run_id: int) -> list[RoundReport]:
    """The ServerApp's body: ``num-server-rounds`` rounds, logged, reported to a JSON file."""
    from hermes_fed.events.coordinator import RoundCompleted, RoundFailed, RoundStarted

    cfg = RoundsConfig.from_run_config(run_config)
    root = Path(cfg.coordinator_dir)
    report_path = root / "reports" / f"run-{run_id}.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    reports: list[RoundReport] = []
    status: dict[str, Any] = {"run_id": str(run_id), "status": "running",
                              "config": asdict(cfg), "rounds": []}
    with AdapterRegistry.open(root) as registry:
        try:
            nodes = wait_for_nodes(grid, cfg.min_nodes, cfg.node_wait)
            if cfg.ab_only:  # A/B looks only (issue 9): no training, no base model loaded
                from coordinator.rounds.looks import ab_looks

                ab_looks(grid, registry, nodes, cfg)
                status["status"] = "completed"
                return reports
            parent = initial_adapter(cfg, registry)
            for number in range(1, cfg.num_server_rounds + 1):
                round_id = f"round-{run_id}-{number}"
                _log_round(registry, RoundStarted, round_id,
                           round_id=round_id, round=number, mode=cfg.mode,
                           parent_version=parent.version, node_ids=[str(n) for n in nodes],
                           config=asdict(cfg))
                try:
                    report = run_round(grid, cfg, registry, nodes, parent, number, run_id)
                except Exception as exc:
                    _log_round(registry, RoundFailed, round_id, round_id=round_id,
                               round=number, error=f"{type(exc).__name__}: {exc}"[:500])
                    raise
                _log_round(registry, RoundCompleted, round_id, round_id=round_id,
                           round=number, version=report.version, report=report.to_dict())
                reports.append(report)
                parent = registry.get(report.version or parent.version)
                print(render_table([report]), flush=True)
                if cfg.ab_looks:
                    from coordinator.rounds.looks import look_after_round

                    look_after_round(grid, registry, nodes, cfg)
            status["status"] = "completed"
        except Exception as exc:
            status["status"] = "failed"
            status["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            raise
        finally:
            status["rounds"] = [r.to_dict() for r in reports]
            report_path.write_text(json.dumps(status, indent=2, default=str) + "\n")
    return reports
