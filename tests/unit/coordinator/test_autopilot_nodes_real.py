"""The autopilot against two real nodes' ClientApps: readiness, offline look, delivery.

The coordinator side is the real runner over its SQLite log; the nodes are the real
ClientApp (``query.trigger``, ``query.ab_stats``, ``train.deploy``) with their own logs and
``node.toml``, reached through the in-process :class:`LoopbackGrid`. Rounds are the one
thing stood in for: a real peft adapter of the packaged base model is published to the
registry as the round's result (a deployment round is ~45 s, tested elsewhere). The test
checks the contract end to end: staleness forces training, the candidate's canary and A/B
plans reach both nodes as PEFT files naming the node's own base model, and each node's log
records the plan the coordinator says it applied.

Skipped where the node side of ``train.deploy`` is not there (a branch before it landed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from flwr.app import Context, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from coordinator.autopilot.config import AutopilotConfig
from coordinator.autopilot.grid_federation import GridNodes
from coordinator.autopilot.runner import Autopilot
from coordinator.autopilot.state import Phase
from coordinator.logs.registry import AdapterRegistry
from hermes_fed.serving.plan import PLAN_STREAM, TrafficPlan
from hermes_fed.store import Keyring, open_store
from hermes_fed.training.config import LoraTrainingConfig
from tests.unit.coordinator.autopilot_nodes import SimClock
from tests.unit.coordinator.test_autopilot_grid import LoopbackGrid

pytest.importorskip("tenant_node.flower.deploy", reason="the node side of deploy is not here")

BASE_MODEL = Path(__file__).resolve().parents[3] / "examples" / "flywheel" / "base_model"
TENANTS = ("acme", "globex")
CFG = AutopilotConfig(min_nodes=2, stale_days=0.5, canary_days=0.25, canary_min_samples=0,
                      look_interval_seconds=6 * 3600, ab_min_samples=10, ab_duration_days=1)


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1


class RealNodes(GridNodes):
    """GridNodes over the nodes' real ClientApps; a round publishes a real peft adapter."""

    def __init__(self, grid: Grid, registry: AdapterRegistry) -> None:
        super().__init__(grid, registry, timeout=60, interval=0.01)
        self.rounds = 0

    def run_rounds(self, parent: str | None, rounds: int) -> list[str]:
        from hermes_fed.training.adapter import adapter_state, build_peft_model, load_base_model

        config = LoraTrainingConfig(r=2, target_modules=("q_proj", "v_proj"))
        model, _ = load_base_model(BASE_MODEL)
        rng = np.random.default_rng(7)
        state = {k: (rng.normal(0, 0.1, v.shape).astype(np.float32) if ".lora_B." in k else v)
                 for k, v in adapter_state(build_peft_model(model, config)).items()}
        self.rounds += 1
        version = self.registry.publish(state, parent=parent, lineage={
            "round": 1, "r": 2, "alpha": config.alpha, "max_length": 64},
            training_config=config, base_model_dir=str(BASE_MODEL))
        return [version.version]


def _node(root: Path, tenant: str, node_id: int) -> Context:
    root.mkdir(parents=True)
    (root / "node.toml").write_text(f'tenant_id = "{tenant}"\ntoken = "{"t" * 24}"\n'
                                    "metrics_port = 0\n")
    (root / "var").mkdir()
    Keyring.generate(tenant).save(root / "var" / "keyring.json")
    return Context(run_id=1, node_id=node_id, state=RecordDict(), run_config={}, node_config={
        "tenant-id": tenant, "store": f"sqlite:///{root / 'var' / 'events.db'}",
        "keyring": str(root / "var" / "keyring.json"), "base-model": str(BASE_MODEL),
        "quality-config": str(root / "node.toml")})


def _plans(root: Path, tenant: str) -> list[str]:
    store = open_store(f"sqlite:///{root / 'var' / 'events.db'}", tenant,
                       keyring=Keyring.from_file(root / "var" / "keyring.json"))
    try:
        return [TrafficPlan.from_event_data(e.data).test_id
                for e in store.read_stream(PLAN_STREAM)]
    finally:
        store.close()


def test_a_cycle_reaches_two_real_nodes_up_to_the_ab_plan(tmp_path: Path) -> None:
    # Prepare
    contexts = {21 + i: _node(tmp_path / t, t, 21 + i) for i, t in enumerate(TENANTS)}
    clock = SimClock()
    with AdapterRegistry.open(tmp_path / "coordinator") as registry:
        nodes = RealNodes(cast(Grid, LoopbackGrid(contexts)), registry)
        autopilot = Autopilot(registry, nodes, CFG, clock)
        # Execute: a day of 6-hour beats
        lines: list[str] = []
        for _ in range(5):
            lines += autopilot.run_until_idle()
            clock.advance(hours=6)
        state = autopilot.state()
    # Assert: staleness trained once; the plans went out and every node applied them
    assert nodes.rounds == 1, lines
    assert state.phase is Phase.AB and state.deploy_failed == (), lines
    candidate = state.candidate
    assert candidate is not None
    for tenant in TENANTS:
        assert _plans(tmp_path / tenant, tenant) == [
            "prod-base", f"canary-{candidate}", f"ab-{candidate}"]
        peft: dict[str, Any] = json.loads(
            (tmp_path / tenant / "var" / "adapters" / candidate / "adapter_config.json")
            .read_text())
        assert peft["base_model_name_or_path"] == str(BASE_MODEL.resolve())
    assert dict(state.node_plans) == {t: f"ab-{candidate}" for t in TENANTS}
    assert set(state.readiness) == set(TENANTS)
    trained = next(n for n in state.recent if n.kind == "intended" and n.what == "train")
    assert trained.reason.startswith("stale:")
