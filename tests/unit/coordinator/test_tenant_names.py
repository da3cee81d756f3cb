"""Reports name tenants, not Flower node ids; a failure says why in a reason code; examples
lost to ``--max-length`` are said in words (issue 21, items 4 and 12)."""

from __future__ import annotations

import pytest
from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from coordinator.rounds.looks import tenant_arms
from coordinator.rounds.report import NodeRoundReport, RoundReport, Timing, render_table
from coordinator.rounds.strategy import reply_error
from coordinator.rounds.tenants import TenantNames, reply_tenant
from hermes_fed.abtest import ArmStats
from hermes_fed.errors import ConfigError, ExamplesTooLongError, NothingToTrainError
from hermes_fed.federation import messages as wire
from hermes_fed.federation.node_settings import NodeSettings
from hermes_fed.federation.reasons import error_text, parse_reason, parse_tenant
from tenant_node.flower.ab_stats import reply_payload
from tenant_node.flower.egress import EgressPolicy, ReplyPayload, build_reply, egress_mod

POLICY = EgressPolicy(k_min=20)


def _request(kind: str = wire.QUERY_AB_STATS) -> Message:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    return Message(RecordDict({"config": ConfigRecord({"mode": "online"})}), dst_node_id=1,
                   message_type=kind)


def _context(tenant: str) -> Context:
    return Context(run_id=1, node_id=1, node_config={"tenant-id": tenant, "k-min": 20},
                   state=RecordDict(), run_config={})


def _arms_reply(tenant: str | None, control: ArmStats, treatment: ArmStats) -> Message:
    payload = reply_payload({"ab.control": control, "ab.treatment": treatment})
    if tenant is not None:
        payload = ReplyPayload(cells=payload.cells, counts=payload.counts,
                               versions={wire.TENANT_ID: tenant})
    return build_reply(_request(), payload, POLICY)


def _failed(tenant: str, exc: Exception, kind: str = wire.TRAIN) -> Message:
    """The error reply Flower builds from the egress guard's exception (run_clientapp)."""
    def handler(message: Message, context: Context) -> Message:
        raise exc

    with pytest.raises(Exception) as caught:
        egress_mod(POLICY)(_request(kind), _context(tenant), handler)  # type: ignore[arg-type]
    reason = str(type(caught.value)) + ":<'" + str(caught.value) + "'>"
    return Message(Error(code=2, reason=reason), reply_to=_request(kind))


def test_a_failure_carries_its_reason_code_and_tenant_but_no_text() -> None:
    # Execute
    reply = _failed("acme", ExamplesTooLongError("none of 175 examples: 'Where is my order'"))

    # Assert
    assert parse_reason(reply.error.reason) == "examples-too-long"
    assert parse_tenant(reply.error.reason) == "acme" and reply_tenant(reply) == "acme"
    assert "Where is my order" not in reply.error.reason and "175" not in reply.error.reason
    assert reply_error(reply) == ("failed: examples-too-long: every selected example was cut "
                                  "before its first assistant token at --max-length: raise "
                                  "--max-length")


@pytest.mark.parametrize("tenant", ["Acme Corp", "a@b", "", "x" * 65])
def test_a_tenant_id_that_is_not_a_version_id_is_never_sent(tenant: str) -> None:
    text = error_text(wire.TRAIN, NothingToTrainError("x"), tenant)
    assert text == "train failed: reason=no-training-data (NothingToTrainError)"
    with pytest.raises(ConfigError, match="node-config tenant-id must be"):
        NodeSettings(tenant_id=tenant, store="sqlite:///x.db", base_model="/m")


def test_selected_examples_lost_to_max_length_are_said_when_nothing_could_leave() -> None:
    # Prepare: 175 selected, 9 trained: the adapter and num-examples stay on the node
    reply = build_reply(_request(wire.TRAIN), ReplyPayload(
        adapter={"m.lora_A.weight": __import__("numpy").zeros((2, 2), "float32")},
        num_examples=9, counts={wire.COUNT_SELECTED: 175, wire.TRUNCATED_EXAMPLES: 175},
        versions={wire.TENANT_ID: "acme"}), POLICY)

    # Execute
    said = reply_error(reply, max_length=256)

    # Assert: no adapter, the 9 not said (below k_min), the cause and the fix said
    assert wire.ADAPTER not in reply.content
    assert said == ("no adapter: 175 selected, fewer than k_min trained (the others were cut "
                    "before their first assistant token at --max-length 256): raise "
                    "--max-length")
    assert "9" not in said.replace("175", "")


def test_the_round_table_names_tenants_and_the_cost_of_max_length() -> None:
    # Prepare: acme lost 38 of 176 selected examples, globex none (5 cut, trained anyway)
    def node(node_id: str, tenant: str | None, selected: int, trained: int,
             truncated: int) -> NodeRoundReport:
        return NodeRoundReport(node_id=node_id, tenant=tenant, selected=selected,
                               num_examples=trained, truncated=truncated, train_loss=1.0,
                               update_norm=0.5, bytes_down=1, bytes_up=1, handler_seconds=1.0,
                               train_seconds=1.0, heldout_before=None, heldout_after=None,
                               heldout_n=None)

    timing = Timing(1.0, 1.0, 0.1, 1.0, 1.0, 0.1)
    report = RoundReport(run_id=1, round=1, mode="exact", parent_version="v1", version="v2",
                         nodes=(node("123", "acme", 176, 138, 150),
                                node("456", "globex", 144, 144, 5),
                                node("789", None, 40, 40, 0)),
                         residual=0.0, fedavg_error=0.0, timing=timing)

    # Execute
    rows = {line.split()[1]: line for line in render_table([report]).splitlines()[2:5]}

    # Assert
    assert set(rows) == {"acme", "globex", "node-789"}
    assert rows["acme"].endswith("176 selected, 138 trained: raise --max-length")
    assert rows["globex"].endswith("5 of 144 examples cut at --max-length (trained on their "
                                   "beginning)")
    assert "selected" not in rows["node-789"]
    assert report.to_dict()["nodes"][0]["tenant"] == "acme"


def test_ab_looks_name_tenants_and_list_the_silent_by_node() -> None:
    # Prepare: acme full, globex suppressed, node 3 failed (its tenant in the error), 4 silent
    full = _arms_reply("acme", ArmStats.from_values([0.5] * 30), ArmStats.from_values([0.6] * 25))
    small = _arms_reply("globex", ArmStats.from_values([0.5] * 30),
                        ArmStats.from_values([0.6] * 5))
    failed = _failed("initech", ValueError("boom"), kind=wire.QUERY_AB_STATS)

    # Execute
    arms, missing = tenant_arms({1: full, 2: small, 3: failed}, [1, 2, 3, 4])

    # Assert
    assert [a.tenant_id for a in arms] == ["acme"] and arms[0].treatment.n == 25
    assert missing == ["globex: suppressed (fewer than k_min)",
                       "initech: failed: internal: an unexpected error on the node (see its "
                       "SuperNode log)", "node-4: no reply"]


def test_two_nodes_claiming_one_tenant_are_kept_apart() -> None:
    names = TenantNames()
    names.remember(1, "acme")
    names.remember(2, "acme")
    names.remember(3, "globex")
    assert names.names([1, 2, 3, 4]) == ["acme@node-1", "acme@node-2", "globex", "node-4"]
