"""Cross-tenant A/B through real Flower processes on 127.0.0.1 (issue 9).

A SuperLink and three SuperNodes, each over its own seeded log (users with a pre-period
session, ``AssignVariant`` assignments, test sessions where the treatment is clearly
worse). ``hermes-fed ab look`` submits an ``ab-only`` run that makes one look: every node
answers ``query.ab_stats`` with per-arm sums through its egress guard (one node's k_min
is above its treatment arm, so that cell is refused and the node is listed as
suppressed), the coordinator records ``ABTestStatsReported`` and
``ABTestConcluded(ROLLBACK)`` (guardrail), rolls the treatment back from its A/B stage,
and records the production version's quality. Every byte the nodes sent is scanned for
the planted canaries (invariant 8). One run: each exchange costs seconds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.deploy.local_federation import LocalFederation, NodeSpec
from coordinator.deploy.wire_capture import find_canaries
from coordinator.logs.abtest import ABTestLog
from coordinator.logs.promotion import PromotionLog
from coordinator.logs.registry import AdapterRegistry
from hermes_fed.cli import main
from hermes_fed.registry.promotion import Stage
from tests.unit.coordinator.ab_data import CANARY, SeededTenant, seed_ab_tenant

pytestmark = pytest.mark.slow

TEST_ID = "ab-deploy"
TENANTS = ("acme", "globex", "initech")
USERS = 90


@pytest.fixture(scope="module")
def coordinator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # v1 in production (forced: there was no earlier test), v2 under A/B at 9%
    root = tmp_path_factory.mktemp("coordinator")
    with AdapterRegistry.open(root) as registry:
        promotions = PromotionLog(registry.store)
        for _ in range(4):
            promotions.promote("v1", reason="bootstrap", force=True)
        for _ in range(3):
            promotions.promote("v2", reason="staged")
        ABTestLog(registry.store).create("v1", "v2", traffic_split=0.5, min_samples=30,
                                         duration_days=14, ab_test_id=TEST_ID)
    return root


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory, coordinator_dir: Path) -> list[SeededTenant]:
    root = tmp_path_factory.mktemp("tenants")
    return [seed_ab_tenant(root, t, ab_test_id=TEST_ID, users=USERS, traffic_split=0.5,
                           effect=-0.5, seed=i, version="v1", treatment_version="v2")
            for i, t in enumerate(TENANTS)]


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory,
               tenants: list[SeededTenant]) -> Iterator[LocalFederation]:
    fed = LocalFederation(tmp_path_factory.mktemp("federation"), capture=True)
    try:
        fed.start()
        for t in tenants:
            extra: dict[str, str | int | float] = {"keyring": t.keyring}
            if t.tenant == "initech":  # k_min above its treatment arm: that cell must not leave
                treated = sum(a == "treatment" for a in t.arm_of_user.values())
                extra["k-min"] = treated + 1
            fed.add_node(NodeSpec(t.tenant, t.store_url, "/unused-for-online-looks", extra))
        yield fed
    finally:
        fed.stop()


def test_online_look_through_flower_records_a_guardrail_rollback(
        federation: LocalFederation, coordinator_dir: Path, tenants: list[SeededTenant]) -> None:
    # Prepare
    assert federation.relay is not None
    canaries = [CANARY, *(u for t in tenants for u in list(t.arm_of_user)[:3])]

    # `coordinator serve` leaves serve.json for the commands; this federation stands in for it
    (coordinator_dir / "serve.json").write_text(json.dumps(
        {"cli_home": str(federation.cli_home), "config": str(federation.config_path)}))

    # Execute: `hermes-fed ab look`, one look, no training
    code = main(["ab", "look", "--dir", str(coordinator_dir), "--min-nodes", str(len(TENANTS))])

    # Assert: the look, its conclusion and the automatic rollback are in the log
    assert code == 0
    with AdapterRegistry.open(coordinator_dir) as registry:
        status = ABTestLog(registry.store).get(TEST_ID)
        promotions = PromotionLog(registry.store)
        state = promotions.state()
        quality = registry.store.read_stream("model-quality-v1")
    assert len(status.looks) == 1
    stats = status.looks[0]["stats"]
    assert stats["mode"] == "online" and len(stats["tenants"]) == 2
    assert len(stats["suppressed_tenants"]) == 1
    assert stats["suppressed_tenants"][0].endswith("suppressed (fewer than k_min)")
    for arms in stats["tenants"].values():
        assert arms["control"]["n"] + arms["treatment"]["n"] == USERS
        assert "sum_xy" in arms["treatment"]  # CUPED covariate sums came through
    assert status.concluded is not None and status.concluded["decision"] == "ROLLBACK"
    assert "guardrail" in " ".join(status.concluded["numbers"]["reasons"])
    assert state.get("v2").stage is Stage.ROLLED_BACK  # type: ignore[union-attr]
    assert state.production == "v1"
    assert len(quality) == 1 and quality[0].data["stats"]["n"] > 0
    assert find_canaries(federation.relay.upstream_bytes(), canaries) == []
