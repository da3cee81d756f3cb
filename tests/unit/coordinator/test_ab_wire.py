"""Node reply -> coordinator arms: what the egress guard lets out is what the coordinator reads."""

from __future__ import annotations

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.rounds.looks import tenant_arms
from hermes_fed.abtest import ArmStats
from hermes_fed.federation.cells import arm_from_metrics
from tenant_node.flower.ab_stats import reply_payload
from tenant_node.flower.egress import EgressPolicy, build_reply

POLICY = EgressPolicy(k_min=20)
_values = st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=0, max_size=60)


def _request() -> Message:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    return Message(RecordDict({"config": ConfigRecord({"mode": "online"})}), dst_node_id=1,
                   message_type="query.ab_stats")


def _reply(control: ArmStats, treatment: ArmStats) -> Message:
    request = _request()
    payload = reply_payload({"ab.control": control, "ab.treatment": treatment})
    return build_reply(request, payload, POLICY)


@settings(max_examples=40, deadline=None)
@given(_values, _values, st.booleans())
def test_arms_survive_the_egress_round_trip_or_are_suppressed(
        y0: list[float], y1: list[float], covariate: bool) -> None:
    # Prepare
    control = ArmStats.from_values(y0, [v / 2 for v in y0] if covariate else None)
    treatment = ArmStats.from_values(y1, [v / 3 for v in y1] if covariate else None)
    # Execute
    metrics = dict(_reply(control, treatment).content.metric_records["metrics"])
    # Assert: a cell with 0 < n < k_min is gone entirely; others come back exactly
    for name, arm in (("ab.control", control), ("ab.treatment", treatment)):
        got = arm_from_metrics(metrics, name)
        if 0 < arm.n < POLICY.k_min:
            assert got is None and not any(k.startswith(name) for k in metrics)
        else:
            assert got == arm


def test_tenant_arms_lists_suppressed_failed_and_silent_nodes() -> None:
    # Prepare: node 1 full, node 2 with a suppressed treatment cell, node 3 silent
    full = _reply(ArmStats.from_values([0.5] * 30), ArmStats.from_values([0.6] * 25))
    small = _reply(ArmStats.from_values([0.5] * 30), ArmStats.from_values([0.6] * 5))
    # Execute
    arms, missing = tenant_arms({1: full, 2: small}, [1, 2, 3])
    # Assert: these replies name no tenant, so the nodes keep their Flower ids
    assert [a.tenant_id for a in arms] == ["node-1"] and arms[0].treatment.n == 25
    assert missing == ["node-2: suppressed (fewer than k_min)", "node-3: no reply"]
