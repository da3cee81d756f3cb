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
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from coordinator.deploy.local_federation import LocalFederation, NodeSpec, read_run_report
from hermes_fed.clock import CLOCK_ENV, OffsetClock
from hermes_fed.errors import ConfigError, FederationError
from hermes_fed.federation.processes import free_port
from hermes_fed.federation.settings import RoundSettings
from hermes_fed.training.learning_rate import LR_SCHEDULES

log = logging.getLogger(__name__)
Say = Callable[[str], None]
DEMO_K_MIN = 5


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """The demo's knobs; the defaults finish in under 10 minutes on 2 CPU cores."""

    directory: Path = field(metadata={"help": "where node logs, the coordinator and the report go"})
    rounds: int = field(default=2, metadata={"help": "flywheel rounds after the cold start"})
    mode: str = field(default="exact", metadata={"help": "aggregation: frozen-a | exact | fedavg"})
    sessions_scale: float = field(
        default=6.0, metadata={"help": "multiplies each tenant's sessions per round (32, 32, 6)"}
    )
    users: int = field(
        default=100,
        metadata={"help": "distinct users per tenant (an online A/B needs >= 30 per arm per tenant)"},
    )
    golden_scale: int = field(
        default=12, metadata={"help": "multiplies each tenant's cold-start goldens per task type"}
    )
    pretrain_steps: int = field(
        default=0,
        metadata={"help": "0: the packaged pre-trained base; N: pre-train a fresh one (N stage-1 steps)"},
    )
    base_model: Path | None = field(default=None, metadata={"help": "use this HF model dir as the base"})
    local_steps: int = field(default=200, metadata={"help": "local LoRA steps per node per round"})
    rank: int = field(default=16, metadata={"help": "LoRA rank (alpha = 2 x rank)"})
    lr: float = field(default=5e-3, metadata={"help": "local peak learning rate"})
    lr_schedule: str = field(
        default="cosine",
        metadata={"help": "local learning-rate schedule, restarted every round: constant | cosine | linear "
                  "(at a constant 5e-3, 3 of 10 training seeds collapsed to 0-1 correct; "
                  "bench/flywheel/seed_spread.py)"},
    )
    warmup_steps: int = field(default=20, metadata={"help": "local warmup steps per round"})
    temperature: float = field(
        default=0.3, metadata={"help": "the agent's sampling temperature while serving users"}
    )
    ab_split: float = field(
        default=0.5, metadata={"help": "share of users the candidate serves in its online A/B"}
    )
    seed: int = field(default=0, metadata={"help": "seeds users, tasks and training"})
    isolation: str = field(default="process", metadata={"help": "SuperNode ClientApp isolation"})

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"demo rounds must be >= 1, got {self.rounds!r}")
        if self.mode not in ("frozen-a", "exact", "fedavg"):
            raise ConfigError(f"demo mode must be frozen-a, exact or fedavg, got {self.mode!r}")
        if not self.sessions_scale > 0:
            raise ConfigError(f"demo sessions_scale must be > 0, got {self.sessions_scale!r}")
        if self.pretrain_steps < 0 or min(self.local_steps, self.golden_scale, self.rank, self.users) < 1:
            raise ConfigError(
                "demo pretrain_steps must be >= 0 and local_steps, golden_scale, rank and users >= 1, "
                f"got {self.pretrain_steps!r}, {self.local_steps!r}, {self.golden_scale!r}, "
                f"{self.rank!r}, {self.users!r}"
            )
        if not self.temperature >= 0.0:
            raise ConfigError(f"demo temperature must be >= 0, got {self.temperature!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"demo lr_schedule must be one of {LR_SCHEDULES}, "
                              f"got {self.lr_schedule!r}")
        if self.warmup_steps < 0:
            raise ConfigError(f"demo warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if not 0.0 < self.ab_split < 1.0:
            raise ConfigError(f"demo ab_split must be in (0, 1), got {self.ab_split!r}")


# --- the base model -------------------------------------------------------------------
def prepare_base(cfg: DemoConfig, say: Say) -> Path:
    """The packaged pre-trained base, a given one, or a freshly pre-trained one (cached)."""
    from examples.flywheel.base import BaseRecipe, build_base, shipped_base

    if cfg.base_model is not None:
        say(f"base model: {cfg.base_model}")
        return cfg.base_model
    if cfg.pretrain_steps == 0:
        base = shipped_base()
        say(f"base model: the packaged 1m tiny model pre-trained on generic tool use ({base})")
        return base
    base = cfg.directory / f"model-pre{cfg.pretrain_steps}"
    if (base / "config.json").exists():
        say(f"base model: {base} (cached)")
        return base
    recipe = BaseRecipe(seed=cfg.seed, steps=cfg.pretrain_steps, copy_steps=cfg.pretrain_steps * 2 // 5)
    say(f"base model: pre-training a 1m tiny model on generic tool use ({recipe})")
    build_base(base, recipe, say)
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
    return max(2, round(float(tenant.sessions_per_round) * cfg.sessions_scale))


def run_demo(cfg: DemoConfig, say: Say = print) -> dict[str, Any]:
    """Run the demo; returns the report body (also written as JSON and HTML)."""
    from dataclasses import replace

    from coordinator.logs.registry import AdapterRegistry
    from examples.flywheel import cold_start_trajectories, default_tenants
    from examples.flywheel.agent import AgentConfig, LocalAgent
    from examples.flywheel.demo_ab import AbSettings, offline_look, online_look
    from examples.flywheel.demo_report import write_report
    from examples.flywheel.sessions import outcome_counts, run_sessions
    from hermes_fed.training.config import LoraTrainingConfig

    started = time.perf_counter()
    cfg.directory.mkdir(parents=True, exist_ok=True)
    base = prepare_base(cfg, say)
    tenants = tuple(replace(t, golden_per_type=t.golden_per_type * cfg.golden_scale, users=cfg.users)
                    for t in default_tenants())
    lora = LoraTrainingConfig(r=cfg.rank, alpha=2.0 * cfg.rank, frozen_a=cfg.mode == "frozen-a",
                              device="cpu")
    ab = AbSettings(traffic_split=cfg.ab_split)
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
    run_config = _run_config(cfg, coordinator_dir, base, len(tenants))
    report: dict[str, Any] = {
        "config": {k: str(v) for k, v in asdict(cfg).items()},
        "base_model": str(base),
        "rounds": [],
        "tenants": [t.tenant_id for t in tenants],
    }
    # A round stands for a week of traffic: the coordinator and the nodes (which date the
    # rounds they train in their logs) read one clock that the demo advances.
    clock = OffsetClock(cfg.directory / "clock.json")
    clock.path.unlink(missing_ok=True)
    clock_env = {CLOCK_ENV: str(clock.path)}
    federation = LocalFederation(cfg.directory / "federation", isolation=cfg.isolation,
                                 capture=True, superlink_env=clock_env, node_env=clock_env)
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
                    # The simulator's tasks come from templates: MinHash over character
                    # shingles cannot tell "41 days after 2024-02-18" from "99 days after
                    # 2025-02-19" at 0.8 and dropped two thirds of a node's goldens, so the
                    # demo's nodes drop exact duplicates only.
                    extra={"keyring": str(node.keyring), "k-min": DEMO_K_MIN,
                           "dedupe-threshold": 1.0},
                )
            )
        say(f"federation up: SuperLink + {len(tenants)} SuperNodes on 127.0.0.1 ({cfg.isolation} isolation)")

        production: str | None = None
        online: dict[str, Any] | None = None  # the test in its online phase, if any
        for r in range(cfg.rounds + 1):
            round_started = time.perf_counter()
            if r:
                clock.advance(timedelta(days=7))
            entry: dict[str, Any] = {"round": r, "production": production, "tenants": {}}
            # 1. usage against production (and, during an online A/B, the treatment by arm),
            #    events to the nodes over gRPC
            with AdapterRegistry.open(coordinator_dir) as registry:
                adapter = registry.load(production) if production is not None else None
                treatment = registry.load(online["treatment"]) if online is not None else None
            serving = AgentConfig(temperature=cfg.temperature)
            agent = LocalAgent(base, adapter, lora if adapter is not None else None, serving)
            treatment_agent = (
                LocalAgent(base, treatment, lora, serving) if treatment is not None else None
            )
            if online is not None:
                entry["ab_test_id"] = online["ab_test_id"]
            for tenant in tenants:
                routing = None
                if online is not None and treatment_agent is not None:
                    routing = _routing(clients[tenant.tenant_id], online, ab, agent, treatment_agent,
                                       production or "base")
                records = run_sessions(tenant, agent, _sessions(tenant, cfg), seed=r,
                                       model_version=production or "base", routing=routing)
                clients[tenant.tenant_id].append_stream([list(rec.events) for rec in records])
                counts = outcome_counts(records)
                entry["tenants"][tenant.tenant_id] = {
                    "usage": counts,
                    "task_success": counts["correct"] / max(1, counts["sessions"]),
                }
                if routing is not None:
                    entry["tenants"][tenant.tenant_id]["arms"] = {
                        arm: outcome_counts([rec for rec in records if rec.arm == arm])
                        for arm in ("control", "treatment")
                    }
            _wait_for_projections(nodes, tenants, r)
            for tenant in tenants:
                entry["tenants"][tenant.tenant_id]["quality"] = quality_of_round(
                    nodes[tenant.tenant_id], r, tenant.tenant_id
                )
            line = ", ".join(f"{t} success {v['task_success']:.0%}" for t, v in entry["tenants"].items())
            versions = production or "base"
            if online is not None:
                versions += f" + {online['treatment']} for {cfg.ab_split:.0%} of users"
            say(f"round {r}: usage with {versions}: {line}")
            # 2. the online A/B's look at this round's traffic
            if online is not None:
                look = online_look(federation, coordinator_dir, run_config, online["ab_test_id"],
                                   7.0 * (r - online["opened_round"]), say)
                entry["online_ab"] = look
                if look["promoted"]:
                    production = online["treatment"]
                if not look["open"]:
                    online = None
            if r == cfg.rounds:
                entry["seconds"] = time.perf_counter() - round_started
                report["rounds"].append(entry)
                break
            # 3. a federated round: local selection + LoRA on each node, aggregation
            outcome = federation.run(run_config, timeout=900)
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
            # 4. the candidate's offline A/B against production; SHIP -> live at the ab stage
            if candidate is None:
                entry["decision"] = {"promoted": False, "reason": "no candidate published"}
            elif online is not None:
                entry["decision"] = {
                    "promoted": False,
                    "verdict": "WAIT",
                    "reason": f"A/B test {online['ab_test_id']} is still running",
                }
                say(f"  {candidate} waits: A/B test {online['ab_test_id']} is still running")
            else:
                decision = offline_look(federation, coordinator_dir, run_config, candidate,
                                        production, ab, say, now=clock.now())
                entry["decision"] = decision
                if decision.get("online"):
                    online = {"ab_test_id": decision["ab_test_id"], "treatment": candidate,
                              "opened_round": r}
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
    report["open_ab_test"] = online
    report["seconds"] = time.perf_counter() - started
    with AdapterRegistry.open(coordinator_dir) as registry:
        report["registry"] = [v.to_dict() for v in registry.versions()]
        report["coordinator_log_ok"] = registry.store.verify().ok
    paths = write_report(report, cfg.directory)
    say(f"report: {paths[0]} and {paths[1]} ({report['seconds']:.0f}s in all)")
    return report


def _routing(client: Any, online: Mapping[str, Any], ab: Any, control: Any, treatment: Any,
             control_version: str) -> Any:
    """Users to arms by the node's keyed hash (``AssignVariant``, recorded on the node)."""
    from examples.flywheel.sessions import ArmRouting
    from hermes_fed.federation.queries import AbQuery

    test_id, treatment_version = str(online["ab_test_id"]), str(online["treatment"])
    # the arms the node's statistics expect for this test (names and weights)
    query = AbQuery("online", test_id, control_version, treatment_version, ab.traffic_split)
    arms = query.arm_weights()

    def assign(user_ref: str) -> str:
        return str(client.assign_variant(test_id, user_ref, arms).variant)

    return ArmRouting(test_id, assign, {"control": control, "treatment": treatment},
                      {"control": control_version, "treatment": treatment_version})


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
    settings = RoundSettings(
        rank=cfg.rank, alpha=2.0 * cfg.rank, lr=cfg.lr, local_steps=cfg.local_steps,
        lr_schedule=cfg.lr_schedule, warmup_steps=cfg.warmup_steps, batch_size=8,
        max_length=320,  # the longest golden (unit conversion) is ~265 tokens
        seed=cfg.seed)
    return {
        "coordinator-dir": str(coordinator_dir.resolve()),
        "base-model": str(base.resolve()),
        "mode": cfg.mode,
        "rounds": 1,
        "min-nodes": n_nodes,
        "ab-looks": 0,
        **settings.to_mapping(),
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
