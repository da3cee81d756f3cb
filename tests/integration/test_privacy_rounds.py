"""Privacy rounds in Flower deployment mode on 127.0.0.1 (issue 8): DP and SecAgg+.

One real SuperLink and three real SuperNodes with canary data (as in the federation
test); every byte the nodes send goes through the capture relay and is scanned for
canaries in every privacy mode (invariant 8). Later tests add nodes with fewer than
k_min examples: they drop out of SecAgg+ at the masked-vector stage (a real dropout, the
node refuses to contribute), first within the reconstruction threshold, then below it.
Each exchange costs seconds, so each mode runs one short round, on SuperNodes with a
long-lived ClientApp worker each (``running_federation``): a fresh ``flwr-clientapp`` per
message put 13-16 s of start-up and imports into each node's 0.6-1.2 s of training.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coordinator.deploy.local_federation import LocalFederation, NodeSpec
from coordinator.deploy.wire_capture import find_canaries
from coordinator.logs.registry import AdapterRegistry
from hermes_fed.errors import FederationError
from hermes_fed.privacy.dp import RdpAccountant
from tests.integration.federation_data import TenantData, running_federation, seed_tenant_store

pytestmark = pytest.mark.slow

TENANTS = ("acme", "globex", "initech")
TRAJECTORIES_PER_TENANT = 80  # ~40% held out: both splits stay above k_min = 20
SMALL_TENANT_TRAJECTORIES = 12  # < k_min training examples: refuses to contribute


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hermes_fed.training.tiny_model import init_tiny_model

    return init_tiny_model(tmp_path_factory.mktemp("model") / "tiny", "1m")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tenants")


@pytest.fixture(scope="module")
def tenants(data_root: Path) -> list[TenantData]:
    return [seed_tenant_store(data_root, t, TRAJECTORIES_PER_TENANT) for t in TENANTS]


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path,
               tenants: list[TenantData]) -> Iterator[LocalFederation]:
    with running_federation(tmp_path_factory.mktemp("federation"), tiny_model, tenants) as fed:
        yield fed


def _config(coordinator_dir: Path, model: Path, **privacy: Any) -> dict[str, Any]:
    # no evaluate exchange (each costs seconds) except where a test turns it on
    return {"coordinator-dir": str(coordinator_dir), "base-model": str(model),
            "mode": "frozen-a", "rounds": 1, "min-nodes": len(TENANTS),
            "local-steps": 2, "batch-size": 8, "lr": 0.005, "evaluate": 0, **privacy}


def _run(federation: LocalFederation, config: dict[str, Any]) -> dict[str, Any]:
    outcome = federation.run(config)
    assert outcome.completed
    body: dict[str, Any] = json.loads(
        (Path(config["coordinator-dir"]) / "reports" / f"run-{outcome.run_id}.json").read_text())
    assert body["status"] == "completed"
    return body


def _assert_no_canary(federation: LocalFederation, since: tuple[int, ...],
                      tenants: list[TenantData], marker: bytes) -> None:
    assert federation.relay is not None
    sent = federation.relay.upstream_since(since)
    assert marker in sent  # the capture saw the replies: the scan is not vacuous
    for tenant in tenants:
        assert find_canaries(sent, tenant.canaries) == []


def _upstream(federation: LocalFederation) -> tuple[int, ...]:
    assert federation.relay is not None
    return federation.relay.mark()


def test_dp_server_round_reports_epsilon_and_clips_every_update(
    federation: LocalFederation, tmp_path: Path, tiny_model: Path, tenants: list[TenantData],
) -> None:
    # Prepare: a bound below the nodes' update norms, so clipping really acts
    clip, z, delta = 1e-3, 1.0, 1e-5
    since = _upstream(federation)
    expected_eps = RdpAccountant().epsilon_after(z, 1.0, delta)

    # Execute
    body = _run(federation, _config(tmp_path, tiny_model, **{
        "dp": "server", "dp-clip": clip, "dp-noise-multiplier": z, "dp-delta": delta,
        "evaluate": 1}))

    # Assert: (epsilon, delta) of the round and cumulative, in the report and the lineage
    (report,) = body["rounds"]
    privacy = report["privacy"]
    assert privacy["dp"] == "server" and privacy["delta"] == delta
    assert privacy["epsilon_round"] == pytest.approx(expected_eps)
    assert privacy["epsilon_total"] == pytest.approx(expected_eps)
    assert set(privacy["per_node"]) == {n["tenant"] for n in report["nodes"]}
    assert all(n["heldout_after"] is not None for n in report["nodes"])
    norms = [p["update_norm"] for p in privacy["per_node"].values()]
    assert max(norms) > 1.5 * clip  # the bound was binding (the node did not clip: server mode)
    for node in privacy["per_node"].values():
        assert node["clipped_norm"] <= clip * (1 + 1e-9)
    with AdapterRegistry.open(tmp_path) as registry:
        published = registry.get(report["version"])
        assert published.lineage["privacy"]["epsilon_total"] == pytest.approx(expected_eps)
        assert published.lineage["privacy"]["noise_multiplier"] == z
    _assert_no_canary(federation, since, tenants, b"lora_B")


def test_dp_client_round_then_the_budget_refuses_the_next_run(
    federation: LocalFederation, tmp_path: Path, tiny_model: Path, tenants: list[TenantData],
) -> None:
    # Prepare: a budget that fits one round at z=1.5 but not two
    z, delta = 1.5, 1e-5
    one, two = (RdpAccountant().epsilon_after(z, 1.0, delta, rounds=k) for k in (1, 2))
    budget = (one + two) / 2
    dp = {"dp": "client", "dp-clip": 0.05, "dp-noise-multiplier": z, "dp-delta": delta,
          "dp-epsilon-budget": budget}
    since = _upstream(federation)

    # Execute: the first run spends one round; a second `round run` starts from the log
    body = _run(federation, _config(tmp_path, tiny_model, **dp))
    with AdapterRegistry.open(tmp_path) as registry:
        versions_before = [v.version for v in registry.versions()]
    with pytest.raises(FederationError, match="finished:failed"):
        federation.run(_config(tmp_path, tiny_model, **dp))

    # Assert: the first round reported its epsilon; the second was refused, clearly,
    # and nothing was published for it
    assert body["rounds"][0]["privacy"]["epsilon_total"] == pytest.approx(one)
    failed = max((tmp_path / "reports").glob("run-*.json"), key=lambda p: p.stat().st_mtime)
    result = json.loads(failed.read_text())
    assert result["status"] == "failed"
    assert "privacy budget exhausted" in result["error"]
    assert f"{two:.3f}" in result["error"]
    with AdapterRegistry.open(tmp_path) as registry:
        assert [v.version for v in registry.versions()] == versions_before
        failures = [e for e in registry.store.read() if e.type == "RoundFailed"]
        assert failures and "privacy budget exhausted" in failures[-1].data["error"]
    _assert_no_canary(federation, since, tenants, b"lora_B")


def _published(coordinator_dir: Path, version: str) -> dict[str, np.ndarray]:
    with AdapterRegistry.open(coordinator_dir) as registry:
        return registry.load(version)


def test_secagg_round_equals_the_plain_round_within_quantisation(
    federation: LocalFederation, tmp_path: Path, tiny_model: Path, tenants: list[TenantData],
) -> None:
    # Prepare: two coordinators from the same seeded initial adapter
    plain_dir, secagg_dir = tmp_path / "plain", tmp_path / "secagg"
    plain = _run(federation, _config(plain_dir, tiny_model))
    since = _upstream(federation)

    # Execute
    secure = _run(federation, _config(secagg_dir, tiny_model, secagg=1))

    # Assert: same parent, same aggregate up to the reported quantisation bound
    (p_round,), (s_round,) = plain["rounds"], secure["rounds"]
    with AdapterRegistry.open(plain_dir) as a, AdapterRegistry.open(secagg_dir) as b:
        assert a.get(p_round["parent_version"]).sha256 == b.get(s_round["parent_version"]).sha256
    secagg = s_round["privacy"]["secagg"]
    assert secagg["dropped"] == [] and [s["ok"] for s in secagg["stages"]] == [True] * 4
    bound = secagg["quantization_bound"]
    assert 0 < bound < 1e-3
    ours, theirs = _published(secagg_dir, s_round["version"]), _published(plain_dir,
                                                                          p_round["version"])
    assert set(ours) == set(theirs)
    worst = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in ours)
    assert worst <= bound + 1e-6
    _assert_no_canary(federation, since, tenants, b"masked_params")


def _add_small_node(federation: LocalFederation, data_root: Path, model: Path,
                    tenant: str) -> TenantData:
    data = seed_tenant_store(data_root, tenant, SMALL_TENANT_TRAJECTORIES)
    federation.add_node(NodeSpec(data.tenant, data.store_url, str(model),
                                 {"heldout-fraction": 0.4}))
    return data


def test_secagg_with_client_dp_tolerates_a_dropout_down_to_the_threshold(
    federation: LocalFederation, tmp_path: Path, tiny_model: Path, data_root: Path,
    tenants: list[TenantData],
) -> None:
    # Prepare: a 4th node that drops out at the masked-vector stage; nodes clip and noise
    _add_small_node(federation, data_root, tiny_model, "small-1")
    since = _upstream(federation)

    # Execute
    body = _run(federation, _config(tmp_path, tiny_model, secagg=1, **{
        "secagg-shares": 3, "secagg-threshold": 2, "dp": "client", "dp-clip": 0.05,
        "dp-noise-multiplier": 1.0}))

    # Assert: the round completed without it, says so, and reports its epsilon
    (report,) = body["rounds"]
    assert report["privacy"]["epsilon_total"] == pytest.approx(
        RdpAccountant().epsilon_after(1.0, 1.0, 1e-5))
    secagg = report["privacy"]["secagg"]
    assert len(secagg["sampled"]) == 4 and len(secagg["dropped"]) == 1
    assert [s["active_nodes"] for s in secagg["stages"]] == [4, 4, 3, 3]
    with AdapterRegistry.open(tmp_path) as registry:
        assert registry.get(report["version"]).lineage["privacy"]["secagg"]["dropped"] == \
            secagg["dropped"]
    _assert_no_canary(federation, since, tenants, b"masked_params")


def test_secagg_below_the_threshold_fails_loudly_and_publishes_nothing(
    federation: LocalFederation, tmp_path: Path, tiny_model: Path, data_root: Path,
) -> None:
    # Prepare: 5 nodes, 2 of which drop out; every node needs 4 live neighbours
    _add_small_node(federation, data_root, tiny_model, "small-2")
    config = _config(tmp_path, tiny_model, secagg=1, **{
        "secagg-shares": 5, "secagg-threshold": 4})

    # Execute: Flower alone would log "halted" and report the run completed
    with pytest.raises(FederationError, match="finished:failed"):
        federation.run(config)

    # Assert
    (report_path,) = (tmp_path / "reports").glob("run-*.json")
    result = json.loads(report_path.read_text())
    assert result["status"] == "failed"
    assert "secure aggregation halted at stage collect-masked-vectors" in result["error"]
    assert "3 of 5 nodes alive" in result["error"]
    with AdapterRegistry.open(tmp_path) as registry:
        assert [v.lineage["mode"] for v in registry.versions()] == ["init"]


def test_secagg_refuses_the_exact_mode(
    federation: LocalFederation, tmp_path: Path, tiny_model: Path,
) -> None:
    config = _config(tmp_path, tiny_model, secagg=1)
    config["mode"] = "exact"
    with pytest.raises(FederationError, match="finished:failed"):
        federation.run(config)
    (report_path,) = (tmp_path / "reports").glob("run-*.json")
    assert "SecAgg+ needs aggregation mode frozen-a" in json.loads(
        report_path.read_text())["error"]
