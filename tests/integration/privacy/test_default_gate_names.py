"""Invariant 7 for names and addresses: the gate ``open_node_store`` builds with the default
node config (what ``node serve`` runs) redacts a planted person and street address before
anything reaches disk, and every stored event's report names the detectors that ran."""

from __future__ import annotations

from pathlib import Path

from hermes_fed.events.envelope import new_event
from hermes_fed.events.session import TrajectoryRecorded
from tenant_node.config import node_config_from_mapping
from tenant_node.ingest.runtime import open_node_store

NAME = "Amara Okonkwo-Ibe"
ADDRESS = "221B Baker Street, London NW1 6XE"


def test_inv7_default_gate_redacts_names_and_addresses_before_disk(tmp_path: Path) -> None:
    # Prepare: the default node config, a trajectory with the name in prose, in a tool
    # call's JSON arguments, in a log line and in a markdown table
    config = node_config_from_mapping({"tenant_id": "t-names", "token": "t" * 20,
                                       "data_dir": str(tmp_path)})
    store = open_node_store(config)
    event = new_event(TrajectoryRecorded(
        trajectory_id="t-1", task=f"Ship the refund to Dr. {NAME} at {ADDRESS}",
        task_type="support",
        messages=[
            {"role": "user", "content": f"Hi, I am {NAME}; I moved to {ADDRESS}."},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "name": "update_customer",
                 "arguments": {"assignee": NAME, "address": ADDRESS}}]},
            {"role": "tool", "tool_call_id": "c1",
             "content": f"2025-01-01 INFO crm: updated user=\"{NAME}\" ok"},
            {"role": "assistant", "content": f"| Customer | Plan |\n|---|---|\n| {NAME} | Pro |"},
        ],
        tools=[], final_response="Done."), stream_id="session-names")
    # Execute
    store.append([event])
    stored = store.read_stream("session-names")[0]
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    # Assert: no word of the name or the street line on disk (database, WAL, keyring)
    for secret in ("Okonkwo", "Amara", "Baker Street", "NW1 6XE"):
        assert secret.encode() not in raw, secret
    data = stored.data
    assert data["task"] == "Ship the refund to Dr. <PERSON_1> at <STREET_ADDRESS_1>"
    assert data["messages"][0]["content"] == "Hi, I am <PERSON_1>; I moved to <STREET_ADDRESS_1>."
    args = data["messages"][1]["tool_calls"][0]["arguments"]
    assert args == {"assignee": "<PERSON_1>", "address": "<STREET_ADDRESS_1>"}
    assert data["messages"][2]["content"] == '2025-01-01 INFO crm: updated user="<PERSON_1>" ok'
    assert data["messages"][3]["content"] == "| Customer | Plan |\n|---|---|\n| <PERSON_1> | Pro |"
    report = stored.metadata["redaction"]
    assert {"PersonNameRecognizer", "StreetAddressRecognizer"} <= set(report["recognizers"])
    assert report["entities"] == {"PERSON": 5, "STREET_ADDRESS": 3}
    assert report["ner"] is False
