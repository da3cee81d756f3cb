"""A round with Flower's default ``--isolation subprocess`` (a ClientApp process per message).

test_federation_deployment runs its rounds on long-lived ClientApp workers (faster); this
test keeps Flower's default path covered: each SuperNode's own ``flower-superexec`` starts
a fresh ``flwr-clientapp`` per message. One frozen-a round must complete, publish a
version and leak no canary, with the SuperNodes started through our poll-interval launcher.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordinator.deploy.local_federation import LocalFederation, NodeSpec
from coordinator.deploy.wire_capture import find_canaries
from coordinator.logs.registry import AdapterRegistry
from tests.integration.federation_data import seed_tenant_store

pytestmark = pytest.mark.slow


def test_round_with_a_clientapp_process_per_message(tmp_path: Path) -> None:
    from hermes_fed.training.tiny_model import init_tiny_model

    # Prepare
    model = init_tiny_model(tmp_path / "model", "1m")
    tenants = [seed_tenant_store(tmp_path / "data", t, 80) for t in ("north", "south")]
    coordinator_dir = tmp_path / "coordinator"
    with LocalFederation(tmp_path / "fed", capture=True, isolation="subprocess") as fed:
        for t in tenants:
            fed.add_node(NodeSpec(t.tenant, t.store_url, str(model), {"heldout-fraction": 0.4}))
        assert fed.workers == {}

        # Execute
        outcome = fed.run({"coordinator-dir": str(coordinator_dir), "base-model": str(model),
                           "mode": "frozen-a", "min-nodes": len(tenants), "local-steps": 2})

        # Assert
        assert outcome.completed
        assert fed.relay is not None
        sent = fed.relay.upstream_bytes()
        # the nodes ran Flower's SuperNode through our launcher, at the local federation's
        # pace (hermes_fed.federation.supernode_launcher)
        assert all("supernode poll interval capped at 0.200 s" in node.log_since_start()
                   for node in fed.nodes.values())
    body = json.loads((coordinator_dir / "reports" / f"run-{outcome.run_id}.json").read_text())
    (report,) = body["rounds"]
    assert all(n["error"] is None for n in report["nodes"])
    with AdapterRegistry.open(coordinator_dir) as registry:
        assert registry.latest() is not None
        assert registry.get(report["version"]).lineage["mode"] == "frozen-a"
    assert b"lora_B" in sent
    for t in tenants:
        assert find_canaries(sent, t.canaries) == []
