"""``hermes-fed demo``: the whole flywheel on 127.0.0.1 with embedded defaults.

Three tenant node daemons (``hermes-fed node serve``: gRPC ingest, redaction gate, SQLite
log, quality projection) and a Flower federation (SuperLink + one SuperNode per tenant,
the coordinator's ServerApp with its registry) run as real processes. Each round:

1. usage: every tenant's simulated users run sessions against the current production
   adapter (the tiny model really samples; tools really run); the session events go to
   the tenant's node over gRPC, where they are redacted and appended;
2. a federated round (``flwr run``): nodes score, select and train locally on their own
   log; the coordinator aggregates and publishes a candidate version;
3. the candidate is evaluated against production on every node's held-out split (paired
   differences as sufficient statistics, through the egress guard), the decision is
   recorded, and a shipped candidate is promoted canary -> ab -> production.

Everything the report shows comes from the coordinator's log and per-round aggregates; no
trajectory leaves a node.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from coordinator.deployment import free_port
from coordinator.federation import LocalFederation, NodeSpec, read_run_report
from hermes_fed.errors import ConfigError, FederationError

log = logging.getLogger(__name__)
Say = Callable[[str], None]
DEMO_K_MIN = 5


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """The demo's knobs; the defaults finish in about 10 minutes on 2 CPU cores."""

    directory: Path = field(metadata={"help": "where models, node logs, the coordinator and the report go"})
    rounds: int = field(default=2, metadata={"help": "flywheel rounds after the cold start"})
    mode: str = field(default="frozen-a", metadata={"help": "aggregation: frozen-a | exact | fedavg"})
    sessions_scale: float = field(
        default=1.0, metadata={"help": "multiplies each tenant's sessions per round"}
    )
    pretrain_steps: int = field(
        default=0, metadata={"help": "generic tool-use pre-training of the base first (0 = none)"}
    )
    base_model: Path | None = field(default=None, metadata={"help": "use this HF model dir as the base"})
    local_steps: int = field(default=8, metadata={"help": "local LoRA steps per node per round"})
    lr: float = field(default=5e-3, metadata={"help": "local learning rate"})
    seed: int = field(default=0, metadata={"help": "seeds users, tasks and training"})
    isolation: str = field(default="process", metadata={"help": "SuperNode ClientApp isolation"})

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"demo rounds must be >= 1, got {self.rounds!r}")
        if self.mode not in ("frozen-a", "exact", "fedavg"):
            raise ConfigError(f"demo mode must be frozen-a, exact or fedavg, got {self.mode!r}")
        if not self.sessions_scale > 0:
            raise ConfigError(f"demo sessions_scale must be > 0, got {self.sessions_scale!r}")
        if self.pretrain_steps < 0 or self.local_steps < 1:
            raise ConfigError(
                f"demo pretrain_steps must be >= 0 and local_steps >= 1, got "
                f"{self.pretrain_steps!r}, {self.local_steps!r}"
            )


# --- the base model -------------------------------------------------------------------
def prepare_base(cfg: DemoConfig, say: Say) -> Path:
    """A tiny base model pre-trained on generic tool use (cached across runs)."""
    from hermes_fed.sim.pretrain import PretrainConfig, pretrain_base
    from hermes_fed.training.tiny_model import init_tiny_model

    if cfg.base_model is not None:
        say(f"base model: {cfg.base_model}")
        return cfg.base_model
    base = cfg.directory / ("model" if cfg.pretrain_steps else "model-init")
    if (base / "config.json").exists():
        say(f"base model: {base} (cached)")
        return base
    say("base model: a fresh 1m tiny model (random weights, locally trained tokenizer)")
    raw = init_tiny_model(cfg.directory / "model-init", "1m", seed=cfg.seed)
    if cfg.pretrain_steps == 0:
        return raw
    say(f"base model: pre-training a 1m tiny model on generic tool use ({cfg.pretrain_steps} steps)")
    stats = pretrain_base(raw, base, PretrainConfig(steps=cfg.pretrain_steps, seed=cfg.seed))
    say(f"  loss {stats['loss_first']:.2f} -> {stats['loss_last']:.2f} in {stats['seconds']:.0f}s")
    return base


# --- tenant node daemons ----------------------------------------------------------------
@dataclass(slots=True)
class NodeDaemon:
    tenant_id: str
    root: Path
    address: str
    token: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def store_url(self) -> str:
        return f"sqlite:///{(self.root / 'data' / 'events.db').resolve()}"

    @property
    def keyring(self) -> Path:
        return (self.root / "data" / "keyring.json").resolve()

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "node.toml").write_text(
            f'tenant_id = "{self.tenant_id}"\ndata_dir = "data"\nlisten = "{self.address}"\n'
            f'token = "{self.token}"\nmetrics_port = 0\n'
            'projections = ["hermes_fed.quality.projection:QualityProjection"]\n'
        )
        with (self.root / "node.log").open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hermes_fed.cli",
                    "node",
                    "serve",
                    "--config",
                    str(self.root / "node.toml"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def client(self) -> Any:
        from hermes_fed.client import IngestClient

        client = IngestClient(self.address, tenant_id=self.tenant_id, token=self.token)
        client.wait_until_serving(timeout_s=120)
        return client

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: the daemon finishes in-flight batches
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def quality_of_round(node: NodeDaemon, round_index: int, tenant_id: str) -> dict[str, Any]:
    """Mean combined quality and tier counts of this round's trajectories (an aggregate)."""
    from hermes_fed.quality import read_model as rm

    engine = sa.create_engine(node.store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(rm.trajectories.c.combined_score, rm.trajectories.c.tier).where(
                    rm.trajectories.c.session_id.like(f"session-{tenant_id}-{round_index}-%")
                )
            ).all()
    finally:
        engine.dispose()
    scores = [float(s) for s, _ in rows if s is not None]
    tiers: dict[str, int] = {}
    for _, tier in rows:
        if tier:
            tiers[tier] = tiers.get(tier, 0) + 1
    return {"n": len(scores), "mean": float(np.mean(scores)) if scores else None, "tiers": tiers}


# --- the flywheel -----------------------------------------------------------------------
def _sessions(tenant: Any, cfg: DemoConfig) -> int:
    return max(2, round(tenant.sessions_per_round * cfg.sessions_scale))


def run_demo(cfg: DemoConfig, say: Say = print) -> dict[str, Any]:
    """Run the demo; returns the report body (also written as JSON and HTML)."""
    from coordinator.demo_report import write_report
    from coordinator.registry import AdapterRegistry
    from hermes_fed.sim import cold_start_trajectories, default_tenants
    from hermes_fed.sim.agent import LocalAgent
    from hermes_fed.sim.sessions import outcome_counts, run_sessions
    from hermes_fed.training.config import LoraTrainingConfig

    started = time.perf_counter()
    cfg.directory.mkdir(parents=True, exist_ok=True)
    base = prepare_base(cfg, say)
    tenants = default_tenants()
    lora = LoraTrainingConfig(r=8, alpha=16.0, frozen_a=cfg.mode == "frozen-a", device="cpu")
    nodes = {
        t.tenant_id: NodeDaemon(
            t.tenant_id,
            cfg.directory / "nodes" / t.tenant_id,
            f"127.0.0.1:{free_port()}",
            secrets.token_urlsafe(24),
        )
        for t in tenants
    }
    coordinator_dir = cfg.directory / "coordinator"
    report: dict[str, Any] = {
        "config": {k: str(v) for k, v in asdict(cfg).items()},
        "rounds": [],
        "tenants": [t.tenant_id for t in tenants],
    }
    federation = LocalFederation(cfg.directory / "federation", isolation=cfg.isolation, capture=True)
    try:
        for node in nodes.values():
            node.start()
        clients = {tid: node.client() for tid, node in nodes.items()}
        say(f"nodes serving: {', '.join(f'{t}@{n.address}' for t, n in nodes.items())}")

        # Cold start: a handful of golden trajectories per task type, as accepted sessions.
        for tenant in tenants:
            golden = cold_start_trajectories(tenant.task_types, tenant.golden_per_type, cfg.seed)
            for i, trajectory in enumerate(golden):
                recorder = clients[tenant.tenant_id].session(f"golden-{i % 5}", "golden")
                tid = _record_golden(recorder, trajectory)
                recorder.accepted(tid)
                recorder.end()
            clients[tenant.tenant_id].flush()
            say(f"  {tenant.tenant_id}: cold start with {len(golden)} golden trajectories")

        federation.start()
        for tenant in tenants:
            node = nodes[tenant.tenant_id]
            federation.add_node(
                NodeSpec(
                    tenant.tenant_id,
                    node.store_url,
                    str(base),
                    # The demo's long-tail tenant has ~10 trajectories a round; k_min stays a real
                    # guard (cells below it are refused) at a level this small data can pass.
                    extra={"keyring": str(node.keyring), "k-min": DEMO_K_MIN},
                )
            )
        say(f"federation up: SuperLink + {len(tenants)} SuperNodes on 127.0.0.1 ({cfg.isolation} isolation)")

        production: str | None = None
        for r in range(cfg.rounds + 1):
            round_started = time.perf_counter()
            entry: dict[str, Any] = {"round": r, "production": production, "tenants": {}}
            adapter = None
            if production is not None:
                with AdapterRegistry.open(coordinator_dir) as registry:
                    adapter = registry.load(production)
            # 1. usage against the production model, events to the nodes over gRPC
            agent = LocalAgent(base, adapter, lora if adapter is not None else None)
            for tenant in tenants:
                records = run_sessions(
                    tenant, agent, _sessions(tenant, cfg), seed=r, model_version=production or "base"
                )
                batches = [list(rec.events) for rec in records]
                clients[tenant.tenant_id].append_stream(batches)
                counts = outcome_counts(records)
                entry["tenants"][tenant.tenant_id] = {
                    "usage": counts,
                    "task_success": counts["correct"] / max(1, counts["sessions"]),
                }
            _wait_for_projections(nodes, tenants, r)
            for tenant in tenants:
                entry["tenants"][tenant.tenant_id]["quality"] = quality_of_round(
                    nodes[tenant.tenant_id], r, tenant.tenant_id
                )
            line = ", ".join(f"{t} success {v['task_success']:.0%}" for t, v in entry["tenants"].items())
            say(f"round {r}: usage with {production or 'base'}: {line}")
            if r == cfg.rounds:
                entry["seconds"] = time.perf_counter() - round_started
                report["rounds"].append(entry)
                break
            # 2. a federated round: local selection + LoRA on each node, aggregation
            outcome = federation.run(_run_config(cfg, coordinator_dir, base, len(tenants)), timeout=900)
            if not outcome.completed:
                raise FederationError(f"round {r}: flwr run did not complete: {outcome}")
            body = read_run_report(coordinator_dir, outcome.run_id)
            (fed_round,) = body["rounds"]
            entry["federated"] = fed_round
            candidate = fed_round.get("version")
            say(
                f"round {r}: federated {cfg.mode} -> candidate {candidate} "
                f"(residual {fed_round.get('residual')}, "
                f"{sum(n.get('bytes_up', 0) for n in fed_round['nodes'])} bytes up)"
            )
            # 3. evaluate candidate vs production on held-out data and decide
            decision = _evaluate_and_promote(
                federation, coordinator_dir, cfg, base, candidate, production, len(tenants), say
            )
            entry["decision"] = decision
            if decision.get("promoted"):
                production = candidate
            entry["seconds"] = time.perf_counter() - round_started
            report["rounds"].append(entry)
        report["wire"] = _wire_summary(federation, clients, nodes)
    finally:
        for client in locals().get("clients", {}).values():
            client.close()
        federation.stop()
        for node in nodes.values():
            node.stop()
    report["production"] = production
    report["seconds"] = time.perf_counter() - started
    with AdapterRegistry.open(coordinator_dir) as registry:
        report["registry"] = [v.to_dict() for v in registry.versions()]
        report["coordinator_log_ok"] = registry.store.verify().ok
    paths = write_report(report, cfg.directory)
    say(f"report: {paths[0]} and {paths[1]} ({report['seconds']:.0f}s in all)")
    return report


def _record_golden(recorder: Any, trajectory: Mapping[str, Any]) -> str:
    tid: str = recorder.trajectory(
        task=trajectory["task"],
        task_type=trajectory["task_type"],
        messages=trajectory["messages"],
        tools=trajectory["tools"],
        final_response=trajectory["final_response"],
        trajectory_id=trajectory["trajectory_id"],
    )
    return tid


def _run_config(
    cfg: DemoConfig, coordinator_dir: Path, base: Path, n_nodes: int
) -> dict[str, str | int | float]:
    return {
        "coordinator-dir": str(coordinator_dir.resolve()),
        "base-model": str(base.resolve()),
        "mode": cfg.mode,
        "num-server-rounds": 1,
        "min-nodes": n_nodes,
        "max-steps": cfg.local_steps,
        "batch-size": 8,
        "lr": cfg.lr,
        "seed": cfg.seed,
        "ab-looks": 0,
    }


def _wait_for_projections(
    nodes: Mapping[str, NodeDaemon], tenants: Any, round_index: int, timeout: float = 60.0
) -> None:
    """The daemons catch their quality projections up in the background; poll until this
    round's trajectories are scored (or give up and report what is there)."""
    deadline = time.monotonic() + timeout
    for tenant in tenants:
        while time.monotonic() < deadline:
            if quality_of_round(nodes[tenant.tenant_id], round_index, tenant.tenant_id)["n"] > 0:
                break
            time.sleep(0.2)


def _wire_summary(
    federation: LocalFederation, clients: Mapping[str, Any], nodes: Mapping[str, NodeDaemon]
) -> dict[str, Any]:
    relay = federation.relay
    return {"bytes_nodes_to_superlink": len(relay.upstream_bytes()) if relay is not None else None}


def _evaluate_and_promote(
    federation: LocalFederation,
    coordinator_dir: Path,
    cfg: DemoConfig,
    base: Path,
    candidate: str | None,
    production: str | None,
    n_nodes: int,
    say: Say,
) -> dict[str, Any]:
    """Offline A/B of candidate vs production, then promotion (see coordinator.demo_ab)."""
    from coordinator.demo_ab import offline_ab_and_promote

    if candidate is None:
        return {"promoted": False, "reason": "no candidate published"}
    return offline_ab_and_promote(
        federation,
        coordinator_dir,
        _run_config(cfg, coordinator_dir, base, n_nodes),
        candidate,
        production,
        say,
    )
