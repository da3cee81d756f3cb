"""A ``train.deploy`` handled by the node's ClientApp reaches users: the gateway in front of
``hermes-fed model serve`` (real processes) picks the recorded plan up and routes a user to
the delivered adapter under its versioned name; a gateway restarted after a delivery that
failed comes back on the last applied plan (DESIGN.md §10, issue 20 item 4)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from hermes_fed.errors import EgressError
from hermes_fed.federation import delivery
from hermes_fed.federation import messages as wire
from hermes_fed.serving.plan import PlanArm, TrafficPlan
from tenant_node.flower.client_app import app

from .stack import BASE_MODEL, TENANT, TOKEN, Node, Server, make_adapter, plan_of

pytestmark = pytest.mark.slow
VERSION = "v2-0123456789ab"
PLAN = TrafficPlan("prod-v2", (PlanArm("production", VERSION, 1.0),), "production")


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1


@pytest.fixture(scope="module")
def node(workdir: Path, served_model: Server) -> Node:
    return Node(workdir / "deploy-node", served_model.url)


@pytest.fixture(scope="module")
def gateway(node: Node) -> Iterator[Server]:
    server = node.gateway().start()  # opens the log and makes the node's key ring
    yield server
    server.stop()


def _context(node: Node) -> Context:
    var = node.workdir / "var"
    return Context(run_id=1, node_id=1, state=RecordDict(), run_config={}, node_config={
        "tenant-id": TENANT, "store": f"sqlite:///{var / 'events.db'}",
        "keyring": str(var / "keyring.json"), "base-model": str(BASE_MODEL),
        "quality-config": str(node.config_path)})


def _deploy(plan: TrafficPlan, adapters: dict[str, Any]) -> Message:
    from hermes_fed.training.adapter import state_sha256

    specs = tuple(delivery.DeployAdapter(v, state_sha256(a.state), a.config.to_dict())
                  for v, a in adapters.items())
    content = RecordDict({wire.CONFIG: delivery.DeploySpec(plan, specs).to_record()})
    for index, saved in enumerate(adapters.values()):
        content[delivery.adapter_key(index)] = wire.adapter_record(saved.state)
    return Message(content, dst_node_id=1, message_type=wire.DEPLOY)




def _served_version(node: Node, gateway: Server, user: str) -> str:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="hermes-fed", user=user, max_tokens=8, temperature=0.0,
        messages=[{"role": "user", "content": "What is 2+3?"}])
    assert raw.parse().choices[0].message is not None
    tid = raw.headers["x-hermes-trajectory-id"]
    store = node.open_store()
    try:
        started = store.read_stream("session-" + tid.split("-")[1])[0]
    finally:
        store.close()
    return str(started.data["model_version"])


def test_a_deploy_routes_users_to_the_new_version_and_survives_a_restart(
        workdir: Path, node: Node, gateway: Server, served_model: Server) -> None:
    from hermes_fed.training.adapter import load_adapter

    # Prepare: an adapter as the coordinator's registry holds it (its own directory)
    saved = load_adapter(make_adapter(workdir / "coordinator-adapters" / VERSION, seed=5))
    assert _served_version(node, gateway, "user-1") == "base"  # no plan yet

    # Execute: the coordinator's deploy, handled by the node's ClientApp
    reply = app(message=_deploy(PLAN, {VERSION: saved}), context=_context(node))

    # Assert: acknowledged, loaded upstream from the node's own directory, routed
    assert wire.reply_version(reply, delivery.APPLIED_PLAN) == PLAN.test_id
    models = httpx.get(served_model.url + "/v1/models").json()["data"]
    roots = {m["id"]: m.get("root", "") for m in models}
    assert roots[VERSION].endswith(f"deploy-node/var/adapters/{VERSION}")
    assert plan_of(gateway, PLAN.test_id) == PLAN.test_id
    assert _served_version(node, gateway, "user-1") == VERSION

    # Execute: the gateway dies; a delivery fails meanwhile (its plan names a version the
    # node has no adapter for); the gateway starts again
    gateway.kill9()
    broken = TrafficPlan("ab-v9", (PlanArm("control", VERSION, 0.5),
                                   PlanArm("treatment", "v9-missing", 0.5)), "control")
    with pytest.raises(EgressError, match="reason=plan-adapter-missing"):
        app(message=_deploy(broken, {}), context=_context(node))
    restarted = node.gateway().start()
    try:
        # Assert: back on the last applied plan, the user still on the delivered version
        assert httpx.get(restarted.url + "/health").json()["plan"] == PLAN.test_id
        assert _served_version(node, restarted, "user-2") == VERSION
    finally:
        restarted.stop()
