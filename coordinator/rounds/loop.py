"""The one round loop: send, collect, aggregate, publish, evaluate, log, report.

Orchestration only; the maths is ``hermes_fed.aggregation`` and ``hermes_fed.privacy``,
and what differs between plain, DP and SecAgg+ rounds is the
:class:`~coordinator.rounds.strategy.RoundStrategy`. One round:

1. ``train`` to every node: the parent adapter and the round's
   :class:`~hermes_fed.federation.RoundSpec`; the strategy collects and combines
   (a round needs ``min-nodes`` usable replies; a failed node is reported by its reason
   code, never by text from the node);
2. the aggregate is checked (a NaN or inf stops the round, naming the tensor), DP rounds
   are charged to the privacy ledger (refused before anything is sent when the budget
   would pass, P2);
3. the new adapter is published to the registry (``AdapterVersionPublished`` with its
   lineage) and, with ``evaluate``, scored on every node's held-out split;
4. ``RoundStarted`` / ``RoundCompleted`` (or ``RoundFailed``) go to the coordinator's log,
   the report to ``<coordinator dir>/reports/run-<run id>.json`` — ``flwr run`` exits 0
   even when the ServerApp fails, so that file is how a caller learns the outcome.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from coordinator.logs.privacy_ledger import PrivacyLedger, accountant_from_log
from coordinator.logs.registry import AdapterRegistry, AdapterVersion
from coordinator.rounds.config import RoundsConfig, merged_run_config, refuse_unknown_keys
from coordinator.rounds.dp import PrivacySettings, render_privacy, settings_dict
from coordinator.rounds.exchange import exchange, payload_bytes, wait_for_nodes
from coordinator.rounds.report import NodeRoundReport, RoundReport, Timing, render_table
from coordinator.rounds.strategy import Collected, RoundStrategy, make_strategy
from coordinator.rounds.tenants import TenantNames
from hermes_fed.errors import FederationError
from hermes_fed.events import new_event
from hermes_fed.events.coordinator import RoundCompleted, RoundFailed, RoundStarted
from hermes_fed.federation import messages as wire

logger = logging.getLogger(__name__)


def initial_adapter(cfg: RoundsConfig, registry: AdapterRegistry) -> AdapterVersion:
    """The latest compatible registry version, or a fresh seeded init published as one."""
    latest = registry.latest()
    shape = cfg.shape_lineage()
    if latest is not None:
        lin = latest.lineage
        if (lin.get("r") == shape["r"] and bool(lin.get("frozen_a")) == shape["frozen_a"]
                and (not shape["frozen_a"] or lin.get("frozen_a_seed") == shape["frozen_a_seed"])
                and lin.get("base_model") == cfg.base_model):
            return latest
    from hermes_fed.training.adapter import adapter_state, build_peft_model, load_base_model

    training = cfg.settings.training_config(cfg.mode)
    base, _ = load_base_model(cfg.base_model, "cpu")
    tensors = adapter_state(build_peft_model(base, training))
    lineage = {"round": 0, "mode": "init", "participating_nodes": [], "per_node": {},
               "residual": None, **shape}
    return registry.publish(tensors, parent=None, lineage=lineage, training_config=training,
                            base_model_dir=cfg.base_model)


def _evaluate(grid: Grid, cfg: RoundsConfig, tensors: Mapping[str, np.ndarray],
              version: str, nodes: Sequence[int], round_number: int,
              collected: Collected) -> tuple[dict[int, Message], float]:
    """Send the new adapter to every node for its held-out evaluation."""
    if not cfg.evaluate:
        return {}, 0.0
    record = wire.adapter_record(tensors)
    config = cfg.spec(round_number, version).to_record()
    msgs = [Message(RecordDict({wire.ADAPTER: record, wire.CONFIG: config}), dst_node_id=n,
                    message_type=wire.EVALUATE, group_id=str(round_number)) for n in nodes]
    for m in msgs:
        collected.nodes[m.metadata.dst_node_id].bytes_down += payload_bytes(m)
    return exchange(grid, msgs, timeout=cfg.round_timeout, interval=cfg.poll_interval)


def _node_reports(nodes: Sequence[int], collected: Collected,
                  evaluations: Mapping[int, Message], names: TenantNames
                  ) -> tuple[NodeRoundReport, ...]:
    reports = []
    for n in nodes:
        outcome, ev = collected.nodes[n], evaluations.get(n)
        m, evm = outcome.metrics, wire.reply_metrics(ev)
        heldout_n = (evm or {}).get(wire.cell_name(wire.HELDOUT, wire.ADAPTED) + ".n")
        up = outcome.bytes_up + (payload_bytes(ev) if ev is not None else 0)
        selected = m.get(wire.COUNT_SELECTED)
        reports.append(NodeRoundReport(
            node_id=str(n), tenant=names.name(n) if names.tenant(n) else None,
            selected=int(selected) if selected is not None else None,
            num_examples=int(m.get(wire.NUM_EXAMPLES, 0)),
            train_loss=m.get(wire.TRAIN_LOSS), update_norm=outcome.update_norm,
            bytes_down=outcome.bytes_down, bytes_up=up,
            handler_seconds=m.get(wire.HANDLER_SECONDS), train_seconds=m.get(wire.TRAIN_SECONDS),
            heldout_before=wire.cell_mean(m, wire.cell_name(wire.HELDOUT_BEFORE, wire.ADAPTED)),
            heldout_after=wire.cell_mean(evm, wire.cell_name(wire.HELDOUT, wire.ADAPTED)),
            heldout_n=int(heldout_n) if heldout_n is not None else None,
            truncated=int(m.get(wire.TRUNCATED_EXAMPLES, 0)),
            outlier=outcome.outlier, error=outcome.error))
    return tuple(reports)


def _name_aggregation_nodes(report: dict[str, Any], names: TenantNames) -> dict[str, Any]:
    """The aggregation report with each node entry's tenant beside its Flower id."""
    nodes = report.get("nodes")
    if not isinstance(nodes, list):
        return report
    named = [{**n, "tenant": names.name(int(n["node_id"]))}
             if isinstance(n, dict) and str(n.get("node_id", "")).isdigit() else n
             for n in nodes]
    return {**report, "nodes": named}


def run_round(grid: Grid, cfg: RoundsConfig, strategy: RoundStrategy,
              registry: AdapterRegistry, nodes: Sequence[int], parent: AdapterVersion,
              round_number: int, run_id: int, ledger: PrivacyLedger | None = None,
              names: TenantNames | None = None) -> tuple[RoundReport, dict[str, Any]]:
    """One federated round; returns its report and its privacy section (and publishes).

    ``names`` (node id -> tenant, kept across a run's rounds) learns from this round's
    replies; the report, the lineage and the privacy section name tenants.
    """
    nodes = list(nodes)
    names = names if names is not None else TenantNames()
    parent_tensors = registry.load(parent.version)
    spec = cfg.spec(round_number, parent.version, strategy.shaping(cfg))
    collected = strategy.run(grid, cfg, nodes, parent_tensors, spec, run_id)
    for n, outcome in collected.nodes.items():
        if outcome.tenant is not None:
            names.remember(n, outcome.tenant)
    for name, tensor in collected.tensors.items():
        if not np.isfinite(tensor).all():
            raise FederationError(f"round {round_number}: aggregate {name} holds NaN or inf")
    privacy: dict[str, Any] = {}
    if ledger is not None:
        privacy = {**ledger.charge(), "per_node": {names.name(int(k)): v
                                                   for k, v in collected.dp_nodes.items()}}
        if "secagg" in collected.report:
            privacy["secagg"] = collected.report["secagg"]
    usable = [n for n in nodes if collected.nodes[n].error is None]
    lineage = {
        "round": round_number, "run_id": str(run_id), "mode": cfg.mode,
        "participating_nodes": names.names(usable),
        "node_ids": {names.name(n): str(n) for n in usable},
        "per_node": {names.name(n): {"num_examples": int(o.metrics.get(wire.NUM_EXAMPLES, 0)),
                              "train_loss": o.metrics.get(wire.TRAIN_LOSS),
                              "update_norm": o.update_norm,
                              "dataset_manifest": o.dataset_manifest}
                     for n in usable for o in (collected.nodes[n],)},
        "residual": collected.report.get("residual"),
        "fedavg_error": collected.report.get("fedavg_error"),
        **({"privacy": privacy} if privacy else {}), **cfg.shape_lineage()}
    started = time.monotonic()
    version = registry.publish(collected.tensors, parent=parent.version,
                               lineage=json.loads(json.dumps(lineage, default=float)),
                               training_config=cfg.settings.training_config(cfg.mode),
                               base_model_dir=cfg.base_model)
    publish_s = time.monotonic() - started
    evaluations, eval_s = _evaluate(grid, cfg, collected.tensors, version.version, nodes,
                                    round_number, collected)
    names.learn_all(evaluations)
    reports = _node_reports(nodes, collected, evaluations, names)
    timing = Timing(
        train_exchange=collected.train_s, evaluate_exchange=eval_s,
        aggregation=collected.aggregation_s,
        local_training_max=max((r.train_seconds or 0.0) for r in reports),
        node_handler_max=max((r.handler_seconds or 0.0) for r in reports), publish=publish_s)
    report = RoundReport(run_id=run_id, round=round_number, mode=cfg.mode,
                         parent_version=parent.version, version=version.version,
                         nodes=reports, residual=collected.report.get("residual"),
                         fedavg_error=collected.report.get("fedavg_error"), timing=timing,
                         aggregation=_name_aggregation_nodes(collected.report, names))
    return report, privacy


def _log(registry: AdapterRegistry, record: Any, stream_id: str) -> None:
    registry.store.append([new_event(record, stream_id=stream_id)])


def run_rounds(grid: Grid, run_config: Mapping[str, Any], run_id: int) -> list[dict[str, Any]]:
    """The ServerApp's body: the configured rounds (or A/B looks), logged and reported."""
    refuse_unknown_keys(merged_run_config(run_config),
                        RoundsConfig.known_keys() | PrivacySettings.known_keys())
    cfg = RoundsConfig.from_run_config(run_config)
    privacy = PrivacySettings.from_run_config(run_config)
    root = Path(cfg.coordinator_dir)
    report_path = root / "reports" / f"run-{run_id}.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    bodies: list[dict[str, Any]] = []
    config = {**cfg.to_run_config(), **({"privacy": settings_dict(privacy)}
                                        if privacy.dp_on or privacy.secagg else {})}
    status: dict[str, Any] = {"run_id": str(run_id), "status": "running", "config": config,
                              "rounds": []}
    with AdapterRegistry.open(root) as registry:
        try:
            strategy = make_strategy(cfg, privacy)
            ledger = (PrivacyLedger(privacy, accountant_from_log(registry.store))
                      if privacy.dp_on or privacy.secagg else None)
            nodes = wait_for_nodes(grid, cfg.min_nodes, cfg.node_wait)
            names = TenantNames()
            if cfg.ab_only:  # A/B looks only: no training, no base model loaded
                from coordinator.rounds.looks import ab_looks

                ab_looks(grid, registry, nodes, cfg, names)
                status["status"] = "completed"
                return bodies
            parent = (registry.get(cfg.parent_version) if cfg.parent_version
                      else initial_adapter(cfg, registry))
            for number in range(1, cfg.rounds + 1):
                round_id = f"round-{run_id}-{number}"
                if ledger is not None:
                    try:
                        ledger.refuse_if_exhausted(number)
                    except FederationError as exc:
                        _log(registry, RoundFailed(round_id=round_id, round=number,
                                                   error=str(exc)[:500]), round_id)
                        raise
                _log(registry, RoundStarted(round_id=round_id, round=number, mode=cfg.mode,
                                            parent_version=parent.version,
                                            node_ids=[str(n) for n in nodes], config=config),
                     round_id)
                try:
                    report, privacy_section = run_round(grid, cfg, strategy, registry, nodes,
                                                        parent, number, run_id, ledger, names)
                except Exception as exc:
                    _log(registry, RoundFailed(round_id=round_id, round=number,
                                               error=f"{type(exc).__name__}: {exc}"[:500]),
                         round_id)
                    raise
                body = {**report.to_dict(), **({"privacy": privacy_section}
                                               if privacy_section else {})}
                body = json.loads(json.dumps(body, default=float))
                _log(registry, RoundCompleted(round_id=round_id, round=number,
                                              version=report.version, report=body), round_id)
                bodies.append(body)
                parent = registry.get(report.version or parent.version)
                print(render_table([report]), flush=True)
                if privacy_section:
                    print(render_privacy(number, privacy_section), flush=True)
                if cfg.ab_looks and ledger is None:
                    from coordinator.rounds.looks import look_after_round

                    look_after_round(grid, registry, nodes, cfg, names)
            status["status"] = "completed"
        except Exception as exc:
            status["status"] = "failed"
            status["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            raise
        finally:
            status["rounds"] = bodies
            report_path.write_text(json.dumps(status, indent=2, default=str) + "\n")
    return bodies


