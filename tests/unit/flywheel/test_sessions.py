"""Simulated sessions: catalog events, seeded ids, PII through the redaction gate, curation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from examples.flywheel.agent import AgentConfig, LocalAgent
from examples.flywheel.coldstart import cold_start_trajectories
from examples.flywheel.flywheel import TenantPool, leaked, redact_batches
from examples.flywheel.sessions import outcome_counts, run_sessions, simulate_sessions
from examples.flywheel.tenants import SimTenant, default_tenants
from hermes_fed.events import DEFAULT_CATALOG
from hermes_fed.privacy import RedactionConfig, Redactor

_FAST = AgentConfig(temperature=1.0, max_call_tokens=10, max_answer_tokens=6)


@pytest.fixture(scope="module")
def tenant() -> SimTenant:
    return SimTenant("acme", {"arithmetic": 1.0, "table_lookup": 1.0}, pii_rate=1.0,
                     table="acme_parts")


@pytest.fixture(scope="module")
def records(tiny_model_dir: Path, tenant: SimTenant) -> list:
    return run_sessions(tenant, LocalAgent(tiny_model_dir, None, config=_FAST), 12, seed=5)


def test_session_batches_are_catalog_events_in_order(records: list) -> None:
    # Execute
    batches = [r.events for r in records]
    # Assert
    for batch in batches:
        assert batch[0].type == "SessionStarted" and batch[-1].type == "SessionEnded"
        assert len({e.stream_id for e in batch}) == 1
        assert batch[0].subject is not None
        recorded = [e for e in batch if e.type == "TrajectoryRecorded"]
        assert 1 <= len(recorded) <= 2
        for e in batch:
            DEFAULT_CATALOG.schema(e.type).validate(e.data)
        ids = {e.data["trajectory_id"] for e in recorded}
        assert {e.data["trajectory_id"] for e in batch if "trajectory_id" in e.data} == ids
        retries = [e for e in batch if e.type == "RetryRequested"]
        assert len(recorded) == 1 + len(retries)


def test_simulate_sessions_is_seeded(tiny_model_dir: Path, tenant: SimTenant) -> None:
    # Execute
    a = simulate_sessions(tenant, tiny_model_dir, None, 3, seed=9, agent_config=_FAST)
    b = simulate_sessions(tenant, tiny_model_dir, None, 3, seed=9, agent_config=_FAST)
    # Assert
    assert len(a) == 3
    assert [[(e.event_id, e.type, e.data) for e in s] for s in a] == \
        [[(e.event_id, e.type, e.data) for e in s] for s in b]


def test_planted_pii_never_passes_the_redaction_gate(records: list, tenant: SimTenant) -> None:
    # Prepare
    planted = [v for r in records for v in r.planted.values()]
    redactor = Redactor(RedactionConfig(deny_terms=tenant.deny_terms()), tenant_secret=b"k" * 32)
    raw = [e for r in records for e in r.events]
    # Execute
    redacted = redact_batches(redactor, [r.events for r in records])
    # Assert
    assert len(planted) >= 10  # pii_rate=1.0: every session carries some
    assert len(leaked(planted, raw)) == len(set(planted))  # the test can fail: raw has them
    assert leaked(planted, redacted) == []
    text = json.dumps([dict(e.data) for e in redacted])
    assert "What is" in text or "Look up" in text  # the requests themselves survive


def test_pool_scores_tiers_and_selects_goldens_first(records: list, tenant: SimTenant) -> None:
    # Prepare
    redactor = Redactor(RedactionConfig(deny_terms=tenant.deny_terms()), tenant_secret=b"k" * 32)
    pool = TenantPool(tenant.tenant_id)
    # Execute
    n_golden = pool.add_golden(cold_start_trajectories(tenant.task_types, 3, 0,
                                                       table=tenant.table))
    n_used = pool.add_events(redact_batches(redactor, [r.events for r in records]))
    selected = pool.select(seed=1)
    # Assert
    assert n_golden == 6
    assert n_used == sum(len(r.outcomes) for r in records)
    assert pool.tier_counts(golden=True) == {"platinum": 6}
    golden_ids = {tid for tid, s in pool.items.items() if s.golden}
    assert golden_ids <= {e.trajectory["trajectory_id"] for e in selected}
    assert all(e.tier != "bronze" for e in selected)
    assert all(e.weight == 5.0 for e in selected if e.tier == "platinum")


def test_outcome_counts_add_up(records: list) -> None:
    counts = outcome_counts(records)
    assert counts["sessions"] == 12
    assert counts["tool_called"] + counts["malformed_call"] <= 12
    assert counts["retries"] == sum(len(r.outcomes) == 2 for r in records)


def test_default_tenants_are_non_iid_with_a_small_one() -> None:
    # Execute
    tenants = default_tenants()
    # Assert
    mixes = [dict(t.task_mix) for t in tenants]
    assert len({tuple(sorted(m.items())) for m in mixes}) == len(tenants)
    sizes = sorted(t.sessions_per_round for t in tenants)
    assert sizes[0] * 4 <= sizes[-1]
    assert len({t.table for t in tenants}) == len(tenants)


def test_tenant_draws_follow_its_mix() -> None:
    # Prepare
    tenant = SimTenant("t1", {"arithmetic": 3.0, "date_arithmetic": 1.0})
    # Execute
    tasks = tenant.draw_tasks(2000, seed=0)
    share = sum(t.task_type == "arithmetic" for t in tasks) / len(tasks)
    # Assert
    assert 0.72 < share < 0.78
    assert tenant.draw_tasks(5, seed=1) == tenant.draw_tasks(5, seed=1)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"tenant_id": "a b", "task_mix": {"arithmetic": 1.0}}, "tenant_id"),
    ({"tenant_id": "a", "task_mix": {"poetry": 1.0}}, "task_mix"),
    ({"tenant_id": "a", "task_mix": {"arithmetic": 0.0}}, "task_mix"),
    ({"tenant_id": "a", "task_mix": {"arithmetic": 1.0}, "sessions_per_round": 0},
     "sessions_per_round"),
    ({"tenant_id": "a", "task_mix": {"arithmetic": 1.0}, "pii_rate": 2.0}, "pii_rate"),
    ({"tenant_id": "a", "task_mix": {"arithmetic": 1.0}, "table": "Bad-Name"}, "table"),
])
def test_sim_tenant_names_the_bad_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"SimTenant.{field}"):
        SimTenant(**kwargs)


def test_routing_serves_each_user_by_its_arm_and_names_the_test(tiny_model_dir: Path,
                                                                 tenant: SimTenant) -> None:
    # Arrange: two real agents that differ (sampling vs greedy); users split by a fixed rule
    from examples.flywheel.sessions import ArmRouting

    control = LocalAgent(tiny_model_dir, None, config=_FAST)
    treatment = LocalAgent(tiny_model_dir, None, config=AgentConfig(
        temperature=0.0, max_call_tokens=10, max_answer_tokens=6))
    arm_of = {f"acme-user-{i}": ("treatment" if i % 2 else "control") for i in range(20)}
    routing = ArmRouting("ab-demo1", arm_of.__getitem__, {"control": control,
                                                         "treatment": treatment},
                         {"control": "v-prod", "treatment": "v-cand"})

    # Execute
    records = run_sessions(tenant, control, 10, seed=3, model_version="v-prod", routing=routing)

    # Assert: each session names the test, its user's arm and that arm's version
    arms = set()
    for r in records:
        started = r.events[0].data
        assert r.arm == arm_of[started["user_ref"]]
        assert (started["ab_test_id"], started["variant"]) == ("ab-demo1", r.arm)
        assert started["model_version"] == {"control": "v-prod", "treatment": "v-cand"}[r.arm]
        DEFAULT_CATALOG.schema("SessionStarted").validate(started)
        arms.add(r.arm)
    assert arms == {"control", "treatment"}
    # Assert: the treatment arm's first attempts are exactly the greedy agent's answers
    served = [r for r in records if r.arm == "treatment"]
    user_texts = [next(m["content"] for m in r.outcomes[0].messages if m["role"] == "user")
                  for r in served]
    expected = treatment.solve([(r.task, text) for r, text in zip(served, user_texts, strict=True)],
                               seed=3)
    assert [r.outcomes[0].messages for r in served] == [o.messages for o in expected]


def test_without_routing_sessions_name_no_test(records: list) -> None:
    # Assert
    for r in records:
        assert r.arm == ""
        assert "ab_test_id" not in r.events[0].data and "variant" not in r.events[0].data
