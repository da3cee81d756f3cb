"""Privacy rounds: the ServerApp of ``coordinator/apps/secagg_app`` (DP and/or SecAgg+).

``hermes-fed round run --dp server|client ... [--secagg]`` submits the Flower app in
``coordinator/apps/secagg_app`` (this ServerApp + :mod:`tenant_node.flower.private_client_app`) to the
same SuperLink and SuperNodes as plain rounds. The loop mirrors
:func:`coordinator.rounds.loop.run_rounds` (same log events, registry, JSON report) and adds:

1. the accountant is rebuilt from the coordinator's log, and a round that would pass the
   epsilon budget is refused before anything is sent (``RoundFailed``; P1, P2);
2. ``train`` goes out plain (each reply is one node's clipped/noised adapter) or through
   SecAgg+ (:func:`coordinator.rounds.secagg.secagg_exchange`: only the mean);
3. DP: server-side clipping and noise (plain), or node-side (client mode / SecAgg+);
4. the round report and ``AdapterVersionPublished.lineage`` carry ``privacy``: (epsilon,
   delta) of the round and cumulative, the DP parameters, SecAgg+ stages, dropped nodes
   and the quantisation bound.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message
from flwr.serverapp import Grid, ServerApp

from coordinator.logs.registry import AdapterRegistry, AdapterVersion
from coordinator.rounds.dp import (
    PrivacyLedger,
    PrivacySettings,
    accountant_from_log,
    node_report,
    noise_the_mean,
    privatize_updates,
    settings_dict,
)
from coordinator.rounds.loop import (
    RoundsConfig,
    _error,
    _log_round,
    _shape_lineage,
    initial_adapter,
    payload_bytes,
    publish_and_evaluate,
    train_exchange,
    wait_for_nodes,
)
from coordinator.rounds.report import NodeRoundReport, RoundReport, Timing, render_table
from hermes_fed.errors import FederationError

logger = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "secagg_app"
"""The Flower app of privacy rounds (``flwr run`` it instead of the repository root)."""

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the configured privacy rounds; raise so a failure ends ``finished:failed``."""
    run_private_rounds(grid, context.run_config, context.run_id)


def _metrics_of(reply: Message | None) -> dict[str, float]:
    if reply is None or reply.has_error() or "metrics" not in reply.content:
        return {}
    return {k: float(v) for k, v in reply.content.metric_records["metrics"].items()
            if isinstance(v, int | float)}


def _cell_mean(metrics: Mapping[str, float], cell: str) -> float | None:
    n, total = metrics.get(f"{cell}.n"), metrics.get(f"{cell}.sum")
    return total / n if n and total is not None else None


def _plain_train(grid: Grid, cfg: RoundsConfig, privacy: PrivacySettings,
                 nodes: Sequence[int], parent: Mapping[str, np.ndarray], config: ConfigRecord,
                 round_number: int) -> tuple[dict[str, np.ndarray], dict[str, Any],
                                             dict[int, dict[str, float]], dict[int, str | None],
                                             dict[int, int], dict[int, int], float, float]:
    """Train messages out, one privatised adapter per reply, the DP mean (noised)."""
    from hermes_fed.aggregation.base import make_aggregator
    from hermes_fed.aggregation.records import AggregationConfig

    # Equal weights: tenant-level DP bounds each tenant's influence, whatever its size.
    replies, updates, down, train_s = train_exchange(grid, cfg, nodes, parent, config, round_number,
                                                     weighted=False)
    started = time.monotonic()
    private, seen = privatize_updates(updates, parent, privacy)
    result = make_aggregator(cfg.mode, AggregationConfig(rank=cfg.r)).aggregate(
        private, scale=cfg.alpha / cfg.r, previous=parent)
    sent = sorted(updates[0].tensors)
    tensors = noise_the_mean(result.tensors, sent, len(updates), privacy)
    aggregation_s = time.monotonic() - started
    info = {**result.report.to_dict(), "dp_nodes": node_report(seen)}
    up = {n: payload_bytes(r) for n, r in replies.items()}
    return (tensors, info, {n: _metrics_of(replies.get(n)) for n in nodes},
            {n: _error(replies.get(n)) for n in nodes}, down, up, train_s, aggregation_s)


def _secagg_train(grid: Grid, cfg: RoundsConfig, privacy: PrivacySettings,
                  nodes: Sequence[int], parent: Mapping[str, np.ndarray], config: ConfigRecord,
                  round_number: int, run_id: int
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[int, dict[str, float]],
                             dict[int, str | None], dict[int, int], dict[int, int], float, float]:
    """SecAgg+ out and back: the unmasked mean Δ of B, applied to the parent (+ noise)."""
    from coordinator.rounds.secagg import secagg_exchange

    outcome = secagg_exchange(grid, run_id=run_id, round_number=round_number, nodes=nodes,
                              parent=parent, config=dict(config), privacy=privacy,
                              interval=cfg.poll_interval)
    live = len(nodes) - len(outcome.dropped)
    if live < cfg.min_nodes:
        raise FederationError(f"round {round_number}: {live} nodes finished SecAgg+, need "
                              f"{cfg.min_nodes}; nothing was published")
    started = time.monotonic()
    tensors = {k: np.asarray(v) for k, v in parent.items()}
    for key, delta in outcome.mean_delta.items():
        tensors[key] = (np.asarray(parent[key], dtype=np.float64) + delta).astype(
            np.asarray(parent[key]).dtype)
    tensors = noise_the_mean(tensors, sorted(outcome.mean_delta), live, privacy)
    aggregation_s = time.monotonic() - started
    info = {"mode": cfg.mode, "residual": None, "fedavg_error": None,
            "secagg": outcome.to_dict()}
    errors: dict[int, str | None] = {
        n: ("dropped out of SecAgg+" if n in outcome.dropped else None) for n in nodes}
    return (tensors, info, {n: outcome.node_metrics.get(n, {}) for n in nodes}, errors,
            dict(outcome.bytes_down), dict(outcome.bytes_up), outcome.seconds, aggregation_s)


def private_round(grid: Grid, cfg: RoundsConfig, privacy: PrivacySettings,
                  ledger: PrivacyLedger, registry: AdapterRegistry, nodes: Sequence[int],
                  parent: AdapterVersion, round_number: int, run_id: int,
                  ) -> tuple[RoundReport, dict[str, Any]]:
    """One privacy round; returns its report and its ``privacy`` section (and publishes)."""
    nodes = list(nodes)
    parent_tensors = registry.load(parent.version)
    config = cfg.message_config(round_number, parent.version)
    # under SecAgg+ client noise is calibrated on min-nodes, the fewest replies a round
    # accepts: the sum carries >= z*C even when nodes drop out (more nodes only add noise)
    for key, value in privacy.message_config(cfg.min_nodes).items():
        config[key] = value
    if privacy.secagg:
        tensors, info, metrics, errors, down, up, train_s, aggregation_s = _secagg_train(
            grid, cfg, privacy, nodes, parent_tensors, config, round_number, run_id)
    else:
        tensors, info, metrics, errors, down, up, train_s, aggregation_s = _plain_train(
            grid, cfg, privacy, nodes, parent_tensors, config, round_number)
    for name, tensor in tensors.items():
        if not np.isfinite(tensor).all():
            raise FederationError(f"round {round_number}: aggregate {name} holds NaN or inf")
    spent = ledger.charge()
    privacy_section = {**spent, "per_node": info.get("dp_nodes", {})}
    if "secagg" in info:
        privacy_section["secagg"] = info["secagg"]
    participating = [str(n) for n in nodes if errors.get(n) is None]
    lineage = {"round": round_number, "run_id": str(run_id), "mode": cfg.mode,
               "participating_nodes": participating,
               "per_node": {str(n): {"num_examples": int(metrics[n].get("num-examples", 0)),
                                     "train_loss": metrics[n].get("train-loss"),
                                     "update_norm": (info.get("dp_nodes", {}).get(str(n)) or {}
                                                     ).get("update_norm")}
                            for n in nodes if errors.get(n) is None},
               "residual": info.get("residual"), "fedavg_error": info.get("fedavg_error"),
               "privacy": privacy_section, **_shape_lineage(cfg)}
    version, evaluations, publish_s, eval_s = publish_and_evaluate(
        grid, cfg, registry, tensors, parent, lineage, nodes, round_number, down)
    reports = []
    dp_nodes = info.get("dp_nodes", {})
    for n in nodes:
        nm, evm = metrics[n], _metrics_of(evaluations.get(n))
        heldout_n = evm.get("heldout.adapter.n")
        reports.append(NodeRoundReport(
            node_id=str(n), num_examples=int(nm.get("num-examples", 0)),
            train_loss=nm.get("train-loss"),
            update_norm=(dp_nodes.get(str(n)) or {}).get("update_norm"),
            bytes_down=down.get(n, 0),
            bytes_up=up.get(n, 0) + (payload_bytes(evaluations[n]) if n in evaluations else 0),
            handler_seconds=nm.get("handler-seconds"), train_seconds=nm.get("train-seconds"),
            heldout_before=_cell_mean(nm, "heldout-before.adapter"),
            heldout_after=_cell_mean(evm, "heldout.adapter"),
            heldout_n=int(heldout_n) if heldout_n is not None else None,
            outlier=False, error=errors.get(n)))
    timing = Timing(
        train_exchange=train_s, evaluate_exchange=eval_s, aggregation=aggregation_s,
        local_training_max=max((r.train_seconds or 0.0) for r in reports),
        node_handler_max=max((r.handler_seconds or 0.0) for r in reports), publish=publish_s)
    report = RoundReport(run_id=run_id, round=round_number, mode=cfg.mode,
                         parent_version=parent.version, version=version.version,
                         nodes=tuple(reports), residual=info.get("residual"),
                         fedavg_error=info.get("fedavg_error"), timing=timing,
                         aggregation={k: v for k, v in info.items() if k != "dp_nodes"})
    return report, privacy_section


def render_privacy(round_number: int, privacy: Mapping[str, Any]) -> str:
    """One line per round: DP parameters, epsilon (round, total), SecAgg+ outcome."""
    parts = [f"{round_number:>5}   privacy dp={privacy.get('dp')}"]
    if privacy.get("dp") != "off":
        parts.append(f"C={privacy['clip_norm']:g} z={privacy['noise_multiplier']:g} "
                     f"delta={privacy['delta']:g} epsilon round={privacy['epsilon_round']:.3f} "
                     f"total={privacy['epsilon_total']:.3f}")
    if (secagg := privacy.get("secagg")) and isinstance(secagg, Mapping):
        parts.append(f"secagg+ dropped={len(secagg['dropped'])} "
                     f"quantisation<= {secagg['quantization_bound']:.2e}")
    return " ".join(parts)


def run_private_rounds(grid: Grid, run_config: Mapping[str, Any],
                       run_id: int) -> list[dict[str, Any]]:
    """The privacy ServerApp's body: rounds, logged, reported to ``reports/run-<id>.json``."""
    from hermes_fed.events.coordinator import RoundCompleted, RoundFailed, RoundStarted

    cfg = RoundsConfig.from_run_config(run_config)
    privacy = PrivacySettings.from_run_config(run_config)
    root = Path(cfg.coordinator_dir)
    report_path = root / "reports" / f"run-{run_id}.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    bodies: list[dict[str, Any]] = []
    status: dict[str, Any] = {"run_id": str(run_id), "status": "running",
                              "config": {**asdict(cfg), "privacy": settings_dict(privacy)},
                              "rounds": []}
    with AdapterRegistry.open(root) as registry:
        try:
            privacy.check_round_setup(cfg.mode, cfg.min_nodes)
            ledger = PrivacyLedger(privacy, accountant_from_log(registry.store))
            nodes = wait_for_nodes(grid, cfg.min_nodes, cfg.node_wait)
            parent = initial_adapter(cfg, registry)
            for number in range(1, cfg.num_server_rounds + 1):
                round_id = f"round-{run_id}-{number}"
                try:
                    ledger.refuse_if_exhausted(number)
                except FederationError as exc:
                    _log_round(registry, RoundFailed, round_id, round_id=round_id,
                               round=number, error=str(exc)[:500])
                    raise
                _log_round(registry, RoundStarted, round_id, round_id=round_id, round=number,
                           mode=cfg.mode, parent_version=parent.version,
                           node_ids=[str(n) for n in nodes],
                           config={**asdict(cfg), "privacy": settings_dict(privacy)})
                try:
                    report, privacy_section = private_round(
                        grid, cfg, privacy, ledger, registry, nodes, parent, number, run_id)
                except Exception as exc:
                    _log_round(registry, RoundFailed, round_id, round_id=round_id,
                               round=number, error=f"{type(exc).__name__}: {exc}"[:500])
                    raise
                body = {**report.to_dict(), "privacy": privacy_section}
                body = json.loads(json.dumps(body, default=float))
                _log_round(registry, RoundCompleted, round_id, round_id=round_id,
                           round=number, version=report.version, report=body)
                bodies.append(body)
                parent = registry.get(report.version or parent.version)
                print(render_table([report]), flush=True)
                print(render_privacy(number, privacy_section), flush=True)
            status["status"] = "completed"
        except Exception as exc:
            status["status"] = "failed"
            status["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            raise
        finally:
            status["rounds"] = bodies
            report_path.write_text(json.dumps(status, indent=2, default=str) + "\n")
    return bodies
