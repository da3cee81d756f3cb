"""The node's ``query.ab_stats`` through the real ClientApp and egress guard (in-process).

Seeded tenant logs (users, pre-period sessions, ``AssignVariant``, test sessions) are
summarised by the node; the expected sums are computed by hand from the seed (DESIGN §5:
an accepted session scores 0.5 + 0.3 + 0.1 = 0.9, an unaccepted one 0.5 - 0.3 + 0.1 = 0.3).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.task_identity import TaskIdentity

from hermes_fed.abtest import ArmStats
from hermes_fed.errors import EgressError
from hermes_fed.federation.cells import arm_from_metrics
from tenant_node.flower.client_app import app
from tests.unit.coordinator.ab_data import CANARY, SeededTenant, seed_ab_tenant

TEST_ID = "ab-node-1"


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> SeededTenant:
    return seed_ab_tenant(tmp_path_factory.mktemp("ab"), "acme", ab_test_id=TEST_ID, users=91,
                          traffic_split=0.5, effect=-0.3)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hermes_fed.training.tiny_model import init_tiny_model

    return init_tiny_model(tmp_path_factory.mktemp("model") / "tiny", "1m")


def _context(t: SeededTenant, model: str = "/nonexistent", **extra: object) -> Context:
    node_config = {"tenant-id": t.tenant, "store": t.store_url, "keyring": t.keyring,
                   "base-model": model, "heldout-fraction": 0.4, **extra}
    return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(),  # type: ignore[arg-type]
                   run_config={})


def _ask(t: SeededTenant, config: dict[str, object], context: Context | None = None,
         **arrays: ArrayRecord) -> Message:
    content = RecordDict({"config": ConfigRecord(config), **arrays})  # type: ignore[dict-item]
    message = Message(content, dst_node_id=1, message_type="query.ab_stats")
    return app(message=message, context=context or _context(t))


def _online(split: float = 0.5) -> dict[str, object]:
    return {"mode": "online", "ab-test-id": TEST_ID, "control": "v1", "treatment": "v2",
            "traffic-split": split, "min-samples": 30, "duration-days": 14}


def _score(accepted: bool) -> float:
    return 0.9 if accepted else 0.3


def _wire(message: Message) -> bytes:
    return b"".join(o.deflate() for o in get_all_nested_objects(message).values())


@pytest.mark.parametrize("via_node", [True, False], ids=["AssignVariant", "SessionStarted-variant"])
def test_online_reply_holds_per_arm_sums_with_cuped_covariates_and_nothing_else(
        tenant: SeededTenant, tmp_path: Path, via_node: bool) -> None:
    # Prepare: the expected sufficient statistics, by hand from the seed
    if not via_node:
        tenant = seed_ab_tenant(tmp_path, "hooli", ab_test_id=TEST_ID, users=60,
                                traffic_split=0.5, effect=-0.3, assign_via_node=False)
    expected = {}
    for arm in ("control", "treatment"):
        users = [u for u, a in tenant.arm_of_user.items() if a == arm]
        y = [_score(tenant.test_accepted[u]) for u in users]
        x = [_score(tenant.pre_score_accepted[u]) for u in users]
        expected[arm] = ArmStats.from_values(y, x)

    # Execute
    reply = _ask(tenant, _online())

    # Assert
    assert not reply.has_error()
    assert set(reply.content) == {"metrics", "versions"}
    assert dict(reply.content.config_records["versions"]) == {"tenant-id": tenant.tenant}
    metrics = dict(reply.content.metric_records["metrics"])
    for arm in ("control", "treatment"):
        got = arm_from_metrics(metrics, f"ab.{arm}")
        assert got is not None and got.n == expected[arm].n
        for name in ("sum", "sumsq", "sum_x", "sum_x2", "sum_xy"):
            assert math.isclose(getattr(got, name), getattr(expected[arm], name), abs_tol=1e-9)
    assert metrics["suppressed-cells"] == 0
    wire = _wire(reply)
    assert CANARY.encode() not in wire and b"user-" not in wire


def test_online_cell_under_k_min_is_suppressed_with_its_covariates(tenant: SeededTenant) -> None:
    # Prepare: k_min above the smaller arm's size but not the larger's (91 users: never a tie)
    sizes = {arm: sum(a == arm for a in tenant.arm_of_user.values())
             for arm in ("control", "treatment")}
    small, big = sorted(sizes, key=sizes.__getitem__)
    assert sizes[small] < sizes[big]
    context = _context(tenant, **{"k-min": sizes[small] + 1})

    # Execute
    reply = _ask(tenant, _online(), context)

    # Assert
    metrics = dict(reply.content.metric_records["metrics"])
    assert not any(k.startswith(f"ab.{small}") for k in metrics)
    assert metrics[f"ab.{big}.n"] == sizes[big] and f"ab.{big}.sum_xy" in metrics
    assert metrics["suppressed-cells"] == 1


def test_online_counts_only_users_of_the_asked_test(tenant: SeededTenant) -> None:
    # Execute
    reply = _ask(tenant, {**_online(), "ab-test-id": "ab-someone-else"})
    # Assert: no user of another test is counted
    metrics = dict(reply.content.metric_records["metrics"])
    assert metrics["ab.control.n"] == 0 and metrics["ab.treatment.n"] == 0


def test_an_erased_user_leaves_the_arm_statistics(tmp_path: Path) -> None:
    # Prepare: a fresh tenant (erasure is permanent) and one user to forget
    from hermes_fed.store import Keyring, open_store

    t = seed_ab_tenant(tmp_path, "umbrella", ab_test_id=TEST_ID, users=60, traffic_split=0.5,
                       effect=0.0)
    before = dict(_ask(t, _online()).content.metric_records["metrics"])
    user = next(iter(t.arm_of_user))
    store = open_store(t.store_url, t.tenant, keyring=Keyring.from_file(t.keyring))
    try:
        store.erase_subject(user, "user request")
    finally:
        store.close()
    # Execute
    after = dict(_ask(t, _online()).content.metric_records["metrics"])
    # Assert: exactly that user's unit is gone from its arm
    arm = f"ab.{t.arm_of_user[user]}"
    assert after[f"{arm}.n"] == before[f"{arm}.n"] - 1
    assert math.isclose(after[f"{arm}.sum"],
                        before[f"{arm}.sum"] - _score(t.test_accepted[user]), abs_tol=1e-9)


def test_version_mode_reports_the_sessions_of_that_version(tenant: SeededTenant) -> None:
    # Prepare: every seeded session runs version "base"
    scores = [_score(v) for v in tenant.pre_score_accepted.values()] + [
        _score(v) for v in tenant.test_accepted.values()]
    # Execute
    reply = _ask(tenant, {"mode": "version", "version": "base", "since-us": 0})
    other = _ask(tenant, {"mode": "version", "version": "v9", "since-us": 0})
    # Assert
    got = arm_from_metrics(dict(reply.content.metric_records["metrics"]), "ab.version")
    assert got is not None and got.n == len(scores)
    assert math.isclose(got.sum, sum(scores), abs_tol=1e-9)
    assert dict(other.content.metric_records["metrics"])["ab.version.n"] == 0


@pytest.mark.parametrize("config", [
    {"mode": "sideways"},
    {"mode": "online", "ab-test-id": TEST_ID},
    {**_online(), "traffic-split": 1.5},
])
def test_bad_query_fails_as_a_type_name_only(tenant: SeededTenant, config: dict[str, object]) -> None:
    with pytest.raises(EgressError) as info:
        _ask(tenant, config)
    assert str(info.value) == ("query.ab_stats failed: reason=bad-request tenant=acme "
                               "(FederationError)")


def test_offline_reply_is_the_paired_difference_on_the_heldout_split(
        tenant: SeededTenant, tiny_model: Path) -> None:
    import torch

    from hermes_fed.store import Keyring, open_store
    from hermes_fed.training.adapter import adapter_state, build_peft_model, load_base_model
    from hermes_fed.training.config import LoraTrainingConfig
    from hermes_fed.training.evaluation import evaluate
    from tenant_node.flower.ab_stats import heldout_trajectories

    torch.set_num_threads(1)
    model = tiny_model
    config = LoraTrainingConfig(r=4, alpha=8.0, max_length=256, device="cpu")
    base, _ = load_base_model(model, "cpu")
    state = adapter_state(build_peft_model(base, config))
    rng = np.random.default_rng(0)
    candidate = {k: (v + 0.05 * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in state.items()}
    store = open_store(tenant.store_url, tenant.tenant, keyring=Keyring.from_file(tenant.keyring))
    try:
        heldout = heldout_trajectories(store, 0.4, 0)
    finally:
        store.close()
    reference = evaluate(model, candidate, heldout, config=config, max_new_tokens=1)
    d = [float(e.adapter_loglik) - e.base_loglik for e in reference.examples]  # type: ignore[arg-type]
    x = [e.base_loglik for e in reference.examples]
    record = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in candidate.items()})

    # Execute: current = the base model (no "current" adapter in the message)
    reply = _ask(tenant, {**_online(), "mode": "offline", "rank": 4, "alpha": 8.0},
                 _context(tenant, str(model)), candidate=record)

    # Assert
    got = arm_from_metrics(dict(reply.content.metric_records["metrics"]), "ab.paired")
    assert got is not None and got.n == len(d) >= 20
    assert math.isclose(got.sum, sum(d), rel_tol=1e-6, abs_tol=1e-9)
    assert got.sum_x is not None and math.isclose(got.sum_x, sum(x), rel_tol=1e-6)
    assert set(reply.content) == {"metrics", "versions"}  # versions: the tenant's id only
    assert dict(reply.content.config_records["versions"]) == {"tenant-id": "acme"}


def test_offline_look_from_registry_to_recorded_decision(
        tenant: SeededTenant, tiny_model: Path, tmp_path: Path) -> None:
    """The coordinator's offline message (from the registry) answered by the node, recorded."""
    import torch

    from coordinator.logs.abtest import ABTestLog
    from coordinator.logs.promotion import PromotionLog
    from coordinator.logs.registry import AdapterRegistry
    from coordinator.rounds.looks import _offline_content, _record_offline, _wants_offline
    from hermes_fed.training.adapter import adapter_state, build_peft_model, load_base_model
    from hermes_fed.training.config import LoraTrainingConfig

    # Prepare: a published candidate, registered as such, under a test against the base model
    torch.set_num_threads(1)
    config = LoraTrainingConfig(r=4, alpha=8.0, device="cpu")
    base, _ = load_base_model(tiny_model, "cpu")
    rng = np.random.default_rng(1)
    tensors = {k: (v + 0.05 * rng.standard_normal(v.shape)).astype(v.dtype)
               for k, v in adapter_state(build_peft_model(base, config)).items()}
    with AdapterRegistry.open(tmp_path / "coordinator") as registry:
        version = registry.publish(tensors, parent=None, lineage={"r": 4, "alpha": 8.0},
                                   training_config=config).version
        promotions = PromotionLog(registry.store)
        promotions.promote(version, reason="trained")
        abtests = ABTestLog(registry.store)
        abtests.create("base", version, ab_test_id="ab-offline")
        status = abtests.get("ab-offline")
        assert _wants_offline(status, promotions)
        content = _offline_content(registry, status)

        # Execute: the node answers the message the coordinator built; the look is recorded
        reply = app(message=Message(content, dst_node_id=1, message_type="query.ab_stats"),
                    context=_context(tenant, str(tiny_model)))
        outcome = _record_offline(abtests, status, {1: reply}, [1, 2], None)
        after = abtests.get("ab-offline")

        # Assert
        stats = after.looks[0]["stats"]
        assert stats["mode"] == "offline" and stats["tenants"]["acme"]["paired"]["n"] >= 20
        assert stats["suppressed_tenants"] == ["node-2: no reply"]
        assert outcome.decision is not None and outcome.decision.numbers["mode"] == "offline"
        assert not _wants_offline(after, promotions)  # the next look is online (or none)
        assert "current" not in content and content.config_records["config"]["rank"] == 4
