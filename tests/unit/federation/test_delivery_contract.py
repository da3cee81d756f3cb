"""The autopilot's wire contract: ``query.trigger`` and ``deploy`` payloads round-trip, and
bad payloads are refused with a FederationError naming what is wrong."""

from __future__ import annotations

import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from hermes_fed.errors import FederationError
from hermes_fed.federation import delivery
from hermes_fed.federation import messages as wire
from hermes_fed.serving.plan import PlanArm, TrafficPlan

SHA = "ab" * 32


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    # Flower stamps messages with the current task's ids; a unit test has no task.
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1


def _reply(metrics: dict[str, float], versions: dict[str, str]) -> Message:
    content = RecordDict({wire.METRICS: MetricRecord(metrics),
                          wire.VERSIONS: ConfigRecord(versions)})
    request = Message(RecordDict(), dst_node_id=1, message_type=wire.QUERY_TRIGGER)
    return Message(content, reply_to=request)


def test_a_deploy_spec_round_trips_through_its_record() -> None:
    # Prepare
    plan = TrafficPlan("ab-7", (PlanArm("control", "v1", 0.9), PlanArm("treatment", "v2", 0.1)),
                       "control")
    spec = delivery.DeploySpec(plan, (delivery.DeployAdapter(
        "v2", SHA, {"r": 4, "alpha": 8.0}, {"per_node": {"acme": 12}}),))

    # Execute
    back = delivery.DeploySpec.from_record(spec.to_record())

    # Assert
    assert back == spec
    assert delivery.adapter_key(0) == "adapter.0"


@pytest.mark.parametrize("config, words", [
    ({}, "missing or bad"),
    ({"plan": "{not json"}, "missing or bad"),
    ({"plan": '{"test_id": "t", "arms": []}'}, "at least one arm"),
    ({"plan": '{"test_id": "t", "arms": [{"name": "p", "version": "v1", "share": 1.0}]}',
      "adapters": '[{"version": "v1", "sha256": "xyz", "lora-config": {}}]'}, "64 hex"),
])
def test_a_bad_deploy_config_is_refused(config: dict[str, str], words: str) -> None:
    with pytest.raises(FederationError, match=words):
        delivery.DeploySpec.from_record(config)


def test_a_trigger_reply_reads_back_with_suppressed_counts_absent() -> None:
    # Prepare
    reply = _reply({delivery.TRIGGER_TRAIN: 0.0, delivery.DAYS_SINCE_TRAINING: 2.5},
                   {delivery.TRIGGER_RULE: "wait", wire.TENANT_ID: "acme"})

    # Execute
    report = delivery.TriggerReport.from_reply(reply)

    # Assert
    assert report == delivery.TriggerReport("acme", False, "wait", days_since_training=2.5)
    assert delivery.TriggerQuery.from_record(
        delivery.TriggerQuery(1_700_000_000_000_000).to_record()).now_us == 1_700_000_000_000_000
    with pytest.raises(FederationError):
        delivery.TriggerQuery.from_record({"now-us": 0})
    assert delivery.TriggerReport.from_reply(
        _reply({delivery.TRIGGER_TRAIN: 1.0}, {delivery.TRIGGER_RULE: "because"})) is None


@pytest.mark.parametrize("message_type", [wire.QUERY_TRIGGER, wire.DEPLOY])
def test_the_autopilot_message_types_are_valid_flower_types(message_type: str) -> None:
    # Flower refuses to build a Message of any other shape ("deploy" alone was one)
    from flwr.app.metadata import validate_message_type

    assert validate_message_type(message_type)
    assert Message(RecordDict(), dst_node_id=1, message_type=message_type).metadata \
        .message_type == message_type
