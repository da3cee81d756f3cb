"""``train.deploy`` through the real ClientApp and egress guard: a real peft adapter of the
packaged base model, a real SQLite log, the node's TOML. Verified, written as PEFT files
naming the node's own base model, recorded as ``TrafficPlanApplied`` -- or refused whole
with a reason code, nothing written and the last applied plan kept."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from hermes_fed.cli import main
from hermes_fed.errors import EgressError
from hermes_fed.events.serving import TrafficPlanApplied
from hermes_fed.federation import delivery
from hermes_fed.federation import messages as wire
from hermes_fed.serving.plan import PLAN_STREAM, PlanArm, TrafficPlan
from hermes_fed.store import Keyring, open_store
from hermes_fed.training.config import LoraTrainingConfig
from tenant_node.flower.client_app import app
from tenant_node.gateway.plans import current_plan

BASE_MODEL = Path(__file__).resolve().parents[3] / "examples" / "flywheel" / "base_model"
TOKEN = "node-token-0123456789abcdef"
V1, V2 = "v1-aaaaaaaaaaaa", "v2-bbbbbbbbbbbb"


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1


@pytest.fixture(scope="module")
def lora() -> tuple[LoraTrainingConfig, dict[str, np.ndarray]]:
    """A real peft LoRA state of the packaged base (B non-zero, so versions differ)."""
    from hermes_fed.training.adapter import adapter_state, build_peft_model, load_base_model

    config = LoraTrainingConfig(r=2, target_modules=("q_proj", "v_proj"))
    model, _ = load_base_model(BASE_MODEL)
    return config, adapter_state(build_peft_model(model, config))


def _state(lora: tuple[LoraTrainingConfig, dict[str, np.ndarray]], seed: int
           ) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (rng.normal(0, 0.1, v.shape).astype(np.float32) if ".lora_B." in k else v)
            for k, v in lora[1].items()}


class Node:
    """A node directory: node.toml (optionally with [gateway]), var/events.db, key ring."""

    def __init__(self, root: Path, gateway: dict[str, Any] | None = None) -> None:
        self.root = root
        self.toml = root / "node.toml"
        lines = ['tenant_id = "acme"', f'token = "{TOKEN}"', "metrics_port = 0"]
        if gateway is not None:
            lines.append("[gateway]")
            lines.extend(f'{k} = "{v}"' for k, v in gateway.items())
        root.mkdir(parents=True, exist_ok=True)
        self.toml.write_text("\n".join(lines) + "\n")
        (root / "var").mkdir()
        Keyring.generate("acme").save(root / "var" / "keyring.json")
        self.adapters = root / "var" / "adapters"

    def context(self) -> Context:
        return Context(run_id=1, node_id=1, state=RecordDict(), run_config={}, node_config={
            "tenant-id": "acme", "store": f"sqlite:///{self.root / 'var' / 'events.db'}",
            "keyring": str(self.root / "var" / "keyring.json"), "base-model": str(BASE_MODEL),
            "quality-config": str(self.toml)})

    def plans(self) -> list[Any]:
        store = open_store(f"sqlite:///{self.root / 'var' / 'events.db'}", "acme",
                           keyring=Keyring.from_file(self.root / "var" / "keyring.json"))
        try:
            return [e for e in store.read_stream(PLAN_STREAM) if e.type == TrafficPlanApplied.TYPE]
        finally:
            store.close()


def _deploy(plan: TrafficPlan, adapters: dict[str, dict[str, np.ndarray]],
            config: LoraTrainingConfig, sha: dict[str, str] | None = None) -> Message:
    from hermes_fed.training.adapter import state_sha256

    specs = tuple(delivery.DeployAdapter(version, (sha or {}).get(version, state_sha256(state)),
                                         config.to_dict(), {"parent": None, "round": 3})
                  for version, state in adapters.items())
    content = RecordDict({wire.CONFIG: delivery.DeploySpec(plan, specs).to_record()})
    for index, state in enumerate(adapters.values()):
        content[delivery.adapter_key(index)] = wire.adapter_record(state)
    return Message(content, dst_node_id=1, message_type=wire.DEPLOY)


def _reply_body(reply: Message) -> tuple[dict[str, float] | None, dict[str, Any]]:
    return wire.reply_metrics(reply), dict(reply.content.config_records[wire.VERSIONS])


CANARY = TrafficPlan("canary-v2", (PlanArm("production", "base", 0.99),
                                   PlanArm("canary", V2, 0.01)), "production")


def test_a_deploy_writes_peft_files_naming_the_nodes_base_model_then_records_the_plan(
        tmp_path: Path, lora: tuple[LoraTrainingConfig, dict[str, np.ndarray]]) -> None:
    from hermes_fed.training.adapter import load_adapter, state_sha256

    # Prepare
    node = Node(tmp_path / "node")
    state = _state(lora, 1)

    # Execute
    reply = app(message=_deploy(CANARY, {V2: state}, lora[0]), context=node.context())

    # Assert: the reply, the files, the log
    assert not reply.has_error()
    assert _reply_body(reply) == ({delivery.DEPLOY_INSTALLED: 1.0, wire.SUPPRESSED_CELLS: 0.0},
                                  {delivery.APPLIED_PLAN: "canary-v2", wire.TENANT_ID: "acme"})
    peft_config = json.loads((node.adapters / V2 / "adapter_config.json").read_text())
    assert peft_config["base_model_name_or_path"] == str(BASE_MODEL.resolve())
    assert (peft_config["r"], sorted(peft_config["target_modules"])) == (2, ["q_proj", "v_proj"])
    saved = load_adapter(node.adapters / V2)
    assert state_sha256(saved.state) == state_sha256(state)
    [event] = node.plans()
    assert TrafficPlan.from_event_data(event.data) == CANARY
    assert event.metadata["actor"] == "coordinator"
    assert [p.name for p in node.adapters.iterdir()] == [V2]  # no staging left behind


def test_node_status_shows_the_applied_plan(
        tmp_path: Path, lora: tuple[LoraTrainingConfig, dict[str, np.ndarray]],
        capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    node = Node(tmp_path / "node")
    app(message=_deploy(CANARY, {V2: _state(lora, 1)}, lora[0]), context=node.context())

    # Execute
    code = main(["node", "status", "--config", str(node.toml), "--json"])
    body = json.loads(capsys.readouterr().out)
    main(["node", "status", "--config", str(node.toml)])
    text = capsys.readouterr().out

    # Assert
    assert code == 0
    assert body["plan"]["test_id"] == "canary-v2" and body["plan"]["arms"][1]["version"] == V2
    assert "traffic plan: canary-v2 (production=base 99%, canary=v2-bbbbbbbbbbbb 1%" in text


def test_a_redelivery_replies_the_same_and_records_nothing_more(
        tmp_path: Path, lora: tuple[LoraTrainingConfig, dict[str, np.ndarray]]) -> None:
    # Prepare
    node = Node(tmp_path / "node")
    message = _deploy(CANARY, {V2: _state(lora, 1)}, lora[0])
    first = app(message=message, context=node.context())

    # Execute
    again = app(message=_deploy(CANARY, {V2: _state(lora, 1)}, lora[0]), context=node.context())

    # Assert
    assert not again.has_error()
    assert _reply_body(again) == _reply_body(first)
    assert len(node.plans()) == 1


def test_a_sha256_mismatch_is_refused_writing_nothing_and_keeping_the_last_plan(
        tmp_path: Path, lora: tuple[LoraTrainingConfig, dict[str, np.ndarray]]) -> None:
    from hermes_fed.training.adapter import state_sha256

    # Prepare: plan 1 applied; plan 2 brings v1 (fine) and v2 whose tensors were altered
    node = Node(tmp_path / "node")
    app(message=_deploy(CANARY, {V2: _state(lora, 1)}, lora[0]), context=node.context())
    good, altered = _state(lora, 2), _state(lora, 3)
    ab = TrafficPlan("ab-v1", (PlanArm("control", V2, 0.5), PlanArm("treatment", V1, 0.5)),
                     "control")
    message = _deploy(ab, {V1: altered}, lora[0], sha={V1: state_sha256(good)})

    # Execute
    with pytest.raises(EgressError) as info:
        app(message=message, context=node.context())

    # Assert
    assert str(info.value) == ("train.deploy failed: reason=adapter-mismatch tenant=acme "
                               "(AdapterIntegrityError)")
    assert sorted(p.name for p in node.adapters.iterdir()) == [V2]
    assert [TrafficPlan.from_event_data(e.data) for e in node.plans()] == [CANARY]


def test_a_version_on_disk_with_other_tensors_is_never_replaced(
        tmp_path: Path, lora: tuple[LoraTrainingConfig, dict[str, np.ndarray]]) -> None:
    # Prepare
    node = Node(tmp_path / "node")
    app(message=_deploy(CANARY, {V2: _state(lora, 1)}, lora[0]), context=node.context())
    before = (node.adapters / V2 / "adapter_model.safetensors").read_bytes()
    other = TrafficPlan("canary-v2b", CANARY.arms, "production")

    # Execute: the same version name, other (correctly hashed) tensors
    with pytest.raises(EgressError, match="reason=adapter-mismatch"):
        app(message=_deploy(other, {V2: _state(lora, 9)}, lora[0]), context=node.context())

    # Assert
    assert (node.adapters / V2 / "adapter_model.safetensors").read_bytes() == before
    assert len(node.plans()) == 1


def test_a_plan_naming_a_version_without_an_adapter_is_refused(
        tmp_path: Path, lora: tuple[LoraTrainingConfig, dict[str, np.ndarray]]) -> None:
    # Prepare: the plan serves V1 and V2; only V2 travels and V1 is not on the node
    node = Node(tmp_path / "node")
    plan = TrafficPlan("ab-x", (PlanArm("control", V1, 0.5), PlanArm("treatment", V2, 0.5)),
                       "control")

    # Execute
    with pytest.raises(EgressError) as info:
        app(message=_deploy(plan, {V2: _state(lora, 1)}, lora[0]), context=node.context())

    # Assert: refused before anything was written
    assert "reason=plan-adapter-missing" in str(info.value)
    assert not node.adapters.exists()
    assert node.plans() == []


def test_an_upstream_that_cannot_load_leaves_the_plan_unapplied(
        tmp_path: Path, lora: tuple[LoraTrainingConfig, dict[str, np.ndarray]]) -> None:
    # Prepare: the node's [gateway] names an upstream nobody listens on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = Node(tmp_path / "node", gateway={"upstream_url": f"http://127.0.0.1:{port}"})

    # Execute
    with pytest.raises(EgressError) as info:
        app(message=_deploy(CANARY, {V2: _state(lora, 1)}, lora[0]), context=node.context())

    # Assert: no plan; the verified adapter stays installed for the next delivery
    assert "reason=upstream-load-failed" in str(info.value)
    assert node.plans() == []
    assert current_plan_of(node) is None


def current_plan_of(node: Node) -> Any:
    store = open_store(f"sqlite:///{node.root / 'var' / 'events.db'}", "acme",
                       keyring=Keyring.from_file(node.root / "var" / "keyring.json"))
    try:
        return current_plan(store)
    finally:
        store.close()


@pytest.mark.parametrize("change, reason", [
    ({"base-model": str(BASE_MODEL), "quality-config": ""}, "bad-node-config"),
    ({"lora": {"rank": 4}}, "bad-adapter"),
    ({"drop-tensors": True}, "bad-request"),
])
def test_bad_deliveries_and_nodes_without_an_adapters_directory_are_refused(
        tmp_path: Path, lora: tuple[LoraTrainingConfig, dict[str, np.ndarray]],
        change: dict[str, Any], reason: str) -> None:
    from hermes_fed.training.adapter import state_sha256

    # Prepare
    node = Node(tmp_path / "node")
    context = node.context()
    state = _state(lora, 1)
    message = _deploy(CANARY, {V2: state}, lora[0])
    if "quality-config" in change:
        context.node_config.update(change)
    if "lora" in change:
        spec = delivery.DeploySpec(CANARY, (delivery.DeployAdapter(
            V2, state_sha256(state), change["lora"]),))
        message.content[wire.CONFIG] = ConfigRecord(dict(spec.to_record()))
    if "drop-tensors" in change:
        del message.content[delivery.adapter_key(0)]

    # Execute
    with pytest.raises(EgressError) as info:
        app(message=message, context=context)

    # Assert
    assert f"reason={reason}" in str(info.value)
    assert node.plans() == []
