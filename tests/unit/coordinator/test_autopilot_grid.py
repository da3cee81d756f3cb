"""The Flower-backed autopilot calls against the real ClientApp, in-process.

:class:`LoopbackGrid` hands each pushed message to the node's real ClientApp (as a
SuperNode would, including Flower's error reply when a handler raises) and returns the
replies on pull. Two tenants are seeded with A/B sessions (``ab_data``); the expected
per-arm counts and sums come from the seed by hand (accepted 0.9, not accepted 0.3).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from flwr.app import Context, Error, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from coordinator.autopilot.grid_federation import GridNodes, decode_reply, encode_reply
from coordinator.logs.registry import AdapterRegistry
from hermes_fed.federation.delivery import DeploySpec
from hermes_fed.federation.queries import AbQuery
from hermes_fed.serving.plan import TrafficPlan
from tenant_node.flower.client_app import app
from tests.unit.coordinator.ab_data import SeededTenant, seed_ab_tenant

TEST_ID = "ab-grid-1"


class LoopbackGrid:
    """The parts of Flower's ``Grid`` the exchange uses, over in-process ClientApps."""

    def __init__(self, contexts: dict[int, Context]) -> None:
        self.contexts = contexts
        self.replies: dict[str, Message] = {}

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for m in messages:
            m.metadata.__dict__["_message_id"] = m.object_id  # what the SuperLink assigns
            node = m.metadata.dst_node_id
            TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, node, 1
            try:
                reply = app(message=m, context=self.contexts[node])
            except Exception as exc:  # a SuperNode turns a raising handler into an error
                reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"),
                                reply_to=m)
            self.replies[m.metadata.message_id] = reply
            ids.append(m.metadata.message_id)
        return ids

    def pull_messages(self, ids: Sequence[str]) -> list[Message]:
        return [self.replies.pop(i) for i in ids if i in self.replies]


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> list[SeededTenant]:
    root = tmp_path_factory.mktemp("grid")
    return [seed_ab_tenant(root, name, ab_test_id=TEST_ID, users=60, traffic_split=0.5,
                           effect=0.2, seed=i) for i, name in enumerate(("acme", "hooli"))]


def _grid(tenants: list[SeededTenant]) -> Grid:
    return cast(Grid, LoopbackGrid({
        11 + i: Context(run_id=1, node_id=11 + i, node_config={
            "tenant-id": t.tenant, "store": t.store_url, "keyring": t.keyring,
            "base-model": "/nonexistent"}, state=RecordDict(), run_config={})
        for i, t in enumerate(tenants)}))


def _expected(t: SeededTenant, arm: str) -> tuple[int, float]:
    users = [u for u, a in t.arm_of_user.items() if a == arm]
    return len(users), sum(0.9 if t.test_accepted[u] else 0.3 for u in users)


def test_an_online_look_names_tenants_and_carries_their_arms(
        tenants: list[SeededTenant], tmp_path: Path) -> None:
    # Prepare
    with AdapterRegistry.open(tmp_path) as registry:
        nodes = GridNodes(_grid(tenants), registry, timeout=30, interval=0.01,
                          names_file=tmp_path / "tenants.json")
        query = AbQuery("online", TEST_ID, "control", "treatment", 0.5, min_samples=10,
                        duration_days=1)
        # Execute
        seen = nodes.online_look(query)
    # Assert: by hand from the seed, and the JSON wire between CLI and ServerApp is lossless
    assert [a.tenant_id for a in seen.arms] == ["acme", "hooli"] and seen.missing == ()
    for t, arms in zip(tenants, seen.arms, strict=True):
        for name, got in (("control", arms.control), ("treatment", arms.treatment)):
            n, total = _expected(t, name)
            assert got.n == n and got.sum == pytest.approx(total, abs=1e-6)
    assert decode_reply("online_look", encode_reply("online_look", seen)) == seen
    assert json.loads((tmp_path / "tenants.json").read_text()) == {"11": "acme", "12": "hooli"}


def test_a_node_that_cannot_answer_is_named_by_the_tenant_it_said_it_was(
        tenants: list[SeededTenant], tmp_path: Path) -> None:
    # Prepare: an earlier call taught the names (kept in the coordinator dir between runs)
    (tmp_path / "tenants.json").write_text(json.dumps({"11": "acme", "12": "hooli"}))
    with AdapterRegistry.open(tmp_path) as registry:
        nodes = GridNodes(_grid(tenants), registry, timeout=30, interval=0.01,
                          names_file=tmp_path / "tenants.json")
        # Execute: a plan naming an adapter nobody delivered (refused by a node that takes
        # deploys: plan-adapter-missing; by one that does not: no handler)
        acks = nodes.deploy(DeploySpec(TrafficPlan.single("v9-ffffffffffff")), [])
        readiness = nodes.poll_triggers(datetime(2026, 1, 1, tzinfo=UTC))
    # Assert: named by tenant, whether they answered or not
    assert [(a.tenant, a.applied_plan) for a in acks] == [("acme", None), ("hooli", None)]
    assert all(a.error and a.error.startswith("failed:") for a in acks)
    named = sorted([r.tenant for r in readiness.reports]
                   + [m.split(":")[0] for m in readiness.missing])
    assert named == ["acme", "hooli"]
