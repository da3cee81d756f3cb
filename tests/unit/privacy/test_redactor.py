"""Event-level redaction: placeholders consistent per session, JSON-aware, key as context,
the report, deny lists from metadata, and the store gate on real ``NewEvent`` records.
Invariants R1-R5 (hermes_fed/privacy/redactor.py) and P1-P3 (placeholders.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hermes_fed.events.envelope import NewEvent
from hermes_fed.privacy import InMemoryPlaceholderIndex, RedactionConfig, Redactor

from .conftest import SECRET

EMAIL = "carol.okafor@example.com"
PHONE = "+44 20 7946 0958"


def _trajectory() -> dict[str, Any]:
    return {
        "trajectory_id": "t-1",
        "task": f"email {EMAIL} the invoice",
        "task_type": "email",
        "messages": [
            {"role": "user", "content": f"Send it to {EMAIL}, or call {PHONE}."},
            {"role": "assistant", "content": "",
             "tool_calls": [{"id": "call_1", "name": "send_email",
                             "arguments": {"to": EMAIL, "phone": "555 0100",
                                           "password": "hunter2", "cc": [EMAIL]}}]},
            {"role": "tool", "tool_call_id": "call_1", "name": "send_email",
             "content": json.dumps({"sent_to": EMAIL, "contact": {"phone": PHONE}})},
            {"role": "assistant", "content": f"Done, mailed {EMAIL}."},
        ],
        "tools": [{"name": "send_email", "description": "send mail",
                   "parameters": {"type": "object"}}],
        "final_response": f"Done, mailed {EMAIL}.",
    }


def test_p1_same_value_same_placeholder_across_turns_and_tool_calls(redactor: Redactor) -> None:
    # Execute
    data, _ = redactor.redact_event("TrajectoryRecorded", _trajectory(), {},
                                    session_key="session-p1")
    # Assert: every occurrence of the address is the same placeholder
    dumped = json.dumps(data)
    assert EMAIL not in dumped
    placeholder = data["messages"][0]["content"].split()[3].rstrip(",")
    assert placeholder.startswith("<EMAIL_ADDRESS_")
    assert data["messages"][1]["tool_calls"][0]["arguments"]["to"] == placeholder
    assert data["messages"][1]["tool_calls"][0]["arguments"]["cc"] == [placeholder]
    assert json.loads(data["messages"][2]["content"])["sent_to"] == placeholder
    assert data["final_response"] == f"Done, mailed {placeholder}."


def test_p1_consistent_across_events_of_one_session_p2_distinct_values() -> None:
    # Prepare
    r = Redactor(RedactionConfig(), tenant_secret=SECRET)
    # Execute
    a = r.redact_text("mail a@example.com", session_key="s")
    b = r.redact_text("mail b@example.com then a@example.com", session_key="s")
    other = r.redact_text("mail b@example.com", session_key="other-session")
    # Assert
    assert a == "mail <EMAIL_ADDRESS_1>"
    assert b == "mail <EMAIL_ADDRESS_2> then <EMAIL_ADDRESS_1>"
    assert other == "mail <EMAIL_ADDRESS_1>"  # numbering is per session


def test_r3_json_stays_valid_and_key_is_context(redactor: Redactor) -> None:
    # Execute
    data, _ = redactor.redact_event("TrajectoryRecorded", _trajectory(), {},
                                    session_key="session-r3")
    # Assert
    args = data["messages"][1]["tool_calls"][0]["arguments"]
    assert args["phone"].startswith("<PHONE_NUMBER_")  # "555 0100" alone is no phone
    assert args["password"].startswith("<PASSWORD_")
    result = json.loads(data["messages"][2]["content"])
    assert result["contact"]["phone"].startswith("<PHONE_NUMBER_")
    # structure and structural ids untouched
    assert data["trajectory_id"] == "t-1" and data["messages"][2]["tool_call_id"] == "call_1"
    assert data["tools"] == _trajectory()["tools"]


def test_numbers_under_personal_keys_become_placeholders(redactor: Redactor) -> None:
    value = redactor.redact_value({"phone": 4155550134, "count": 4155550134}, session_key="n")
    assert value["phone"].startswith("<PHONE_NUMBER_") and value["count"] == 4155550134


def test_r4_report_names_types_counts_recognizers_never_values(redactor: Redactor) -> None:
    # Execute
    _, metadata = redactor.redact_event("TrajectoryRecorded", _trajectory(),
                                        {"actor": "agent"}, session_key="session-r4")
    # Assert
    report = metadata["redaction"]
    assert metadata["actor"] == "agent"
    assert report["ner"] is False and report["ner_source"] is None
    assert "EmailAddressRecognizer" in report["recognizers"]
    assert "CandidatePhoneRecognizer" in report["recognizers"]
    assert report["entities"]["EMAIL_ADDRESS"] == 7
    assert report["entities"]["PASSWORD"] == 1
    assert report["total"] == sum(report["entities"].values())
    assert EMAIL not in json.dumps(report) and "hunter2" not in json.dumps(report)


def test_r4_client_cannot_forge_the_report(redactor: Redactor) -> None:
    _, metadata = redactor.redact_event("SessionEnded", {}, {"redaction": {"total": -1}},
                                        session_key="forge")
    assert metadata["redaction"]["total"] == 0


def test_r5_deny_terms_from_session_started_are_applied_and_removed() -> None:
    # Prepare
    index = InMemoryPlaceholderIndex()
    r = Redactor(RedactionConfig(), tenant_secret=SECRET, placeholder_index=index)
    # Execute
    data, metadata = r.redact_event(
        "SessionStarted", {"user_ref": "u-1", "model_version": "m1"},
        {"deny_terms": ["Wonka Industries", "cust-7781"], "note": "for Wonka Industries"},
        session_key="session-d")
    later = r.redact_text("cust-7781 from wonka industries called", session_key="session-d")
    elsewhere = r.redact_text("cust-7781 called", session_key="session-x")
    # Assert
    assert "deny_terms" not in metadata
    assert metadata["note"] == "for <DENY_LIST_1>"
    assert "SessionDenyList" in metadata["redaction"]["recognizers"]
    assert data == {"user_ref": "u-1", "model_version": "m1"}
    assert later == "<DENY_LIST_2> from <DENY_LIST_1> called"
    assert elsewhere == "cust-7781 called"  # session deny terms stay in their session
    assert index.deny_terms("session-d") == ("Wonka Industries", "cust-7781")


def test_bad_deny_terms_raise_and_name_the_type(redactor: Redactor) -> None:
    from hermes_fed.errors import RedactionError

    with pytest.raises(RedactionError, match="deny_terms must be"):
        redactor.redact_event("SessionStarted", {}, {"deny_terms": 42}, session_key="bad")


def test_gate_redacts_new_events_keyed_by_stream(redactor: Redactor) -> None:
    # Prepare
    events = [
        NewEvent(stream_id="session-g", type="TrajectoryRecorded", data=_trajectory(),
                 metadata={"deny_terms": ["Zorg"]}),
        NewEvent(stream_id="session-g", type="ErrorReported",
                 data={"trajectory_id": "t-1", "reason": f"bounced {EMAIL} for Zorg"}),
    ]
    # Execute
    out = redactor.redact_new_events(events)
    # Assert
    assert [e.event_id for e in out] == [e.event_id for e in events]
    assert all(isinstance(e, NewEvent) for e in out)
    reason = out[1].data["reason"]
    first_email = out[0].data["messages"][0]["content"].split()[3].rstrip(",")
    assert reason == f"bounced {first_email} for <DENY_LIST_1>"
    assert "deny_terms" not in out[0].metadata and "redaction" in out[1].metadata


def test_r2_redacting_twice_changes_nothing(redactor: Redactor) -> None:
    data, _ = redactor.redact_event("TrajectoryRecorded", _trajectory(), {}, session_key="r2")
    again, _ = redactor.redact_event("TrajectoryRecorded", data, {}, session_key="r2")
    assert again == data


def test_deep_nesting_beyond_max_depth_is_redacted_as_text() -> None:
    r = Redactor(RedactionConfig(max_depth=2), tenant_secret=SECRET)
    value = r.redact_value({"a": {"b": {"c": {"to": EMAIL}}}}, session_key="deep")
    assert EMAIL not in json.dumps(value)


def test_tenant_secret_must_be_key_material() -> None:
    from hermes_fed.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 16 bytes"):
        Redactor(RedactionConfig(), tenant_secret=b"short")


def test_memoised_findings_never_hide_a_session_deny_list_and_keep_no_raw_text() -> None:
    """Texts are detected once (a call's first user turn is also its ``task``, its answer
    its ``final_response``), but a session deny list still applies to a text first seen
    clean, a memoised text redacts exactly as before, and long texts are remembered by
    digest only."""
    index = InMemoryPlaceholderIndex()
    r = Redactor(RedactionConfig(), tenant_secret=SECRET, placeholder_index=index)
    long_text = ("Please ship order 4711 to the Wonka Industries warehouse, attention "
                 "jane.roe@example.com, before Friday.")
    first = r.redact_text(long_text, session_key="session-a")
    again = r.redact_text(long_text, session_key="session-a")
    elsewhere = r.redact_text(long_text, session_key="session-b")
    r.redact_event("SessionStarted", {"user_ref": "u-1"}, {"deny_terms": ["Wonka Industries"]},
                   session_key="session-c")
    denied = r.redact_text(long_text, session_key="session-c")
    assert first == again == ("Please ship order 4711 to the Wonka Industries warehouse, "
                              "attention <EMAIL_ADDRESS_1>, before Friday.")
    assert elsewhere == first  # numbering is per session: both sessions' first e-mail
    assert denied == ("Please ship order 4711 to the <DENY_LIST_1> warehouse, attention "
                      "<EMAIL_ADDRESS_1>, before Friday.")
    memo_keys = [key for key, _ in r._memo]
    assert memo_keys and all(isinstance(k, bytes) or len(k) <= 64 for k in memo_keys)
    assert not any(isinstance(k, str) and "jane.roe" in k for k in memo_keys)


def test_a_trajectorys_task_and_final_response_redact_like_its_messages(
        redactor: Redactor) -> None:
    user = "My e-mail is sam.hill@example.org and my card 4111 1111 1111 1111 was refused."
    data, _ = redactor.redact_event(
        "TrajectoryRecorded",
        {"task": user, "messages": [{"role": "user", "content": user},
                                    {"role": "assistant", "content": "Noted, sam.hill@example.org."}],
         "final_response": "Noted, sam.hill@example.org."},
        {}, session_key="session-memo")
    assert data["task"] == data["messages"][0]["content"]
    assert data["final_response"] == data["messages"][1]["content"]
    assert "sam.hill" not in json.dumps(data) and "<EMAIL_ADDRESS_1>" in data["task"]


def test_prewarm_detects_ahead_mints_nothing_and_redaction_then_reuses_it() -> None:
    index = InMemoryPlaceholderIndex()
    r = Redactor(RedactionConfig(), tenant_secret=SECRET, placeholder_index=index)
    calls: list[str] = []
    find = r.detector.find

    def counting(text: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(text)
        return find(text, *args, **kwargs)

    r.detector.find = counting  # type: ignore[method-assign]
    user = "Send the invoice to lee.chan@example.net, order 4711, Calle Mayor 5, 28013 Madrid."
    tool_result = '{"customer": "lee.chan@example.net", "status": "shipped"}'
    messages = [{"role": "user", "content": user},
                {"role": "tool", "tool_call_id": "call_1", "content": tool_result}]
    r.prewarm(messages, "messages", 1)
    ahead = len(calls)
    assert user in calls and "lee.chan@example.net" in calls  # JSON in a string is walked
    assert index.deny_terms("session-p") == () and not index._numbers  # nothing minted
    data, _ = r.redact_event("TrajectoryRecorded", {"messages": messages, "task": user}, {},
                             session_key="session-p")
    assert calls[ahead:] == ["messages", "task"]  # only the event's own keys were new
    assert "lee.chan" not in json.dumps(data)
    assert data["messages"][0]["content"].startswith("Send the invoice to <EMAIL_ADDRESS_1>")


def test_detection_from_several_threads_finds_what_one_thread_finds() -> None:
    """The gateway detects a call's messages on a worker while its writer redacts others:
    the detector must give every thread the findings it gives one."""
    from concurrent.futures import ThreadPoolExecutor

    r = Redactor(RedactionConfig(), tenant_secret=SECRET)
    texts = [
        f"Ticket {i}: Maria Fernández (maria.f{i}@example.com, +34 612 345 {i % 1000:03d}) "
        f"moved to Calle Mayor {i % 90 + 1}, 28013 Madrid; card 4111 1111 1111 1111, "
        f"server 10.0.{i % 256}.7, order 2024-05-{i % 28 + 1:02d}"
        for i in range(240)
    ]
    alone = [r.detector.find(t) for t in texts]
    with ThreadPoolExecutor(max_workers=6) as pool:
        together = list(pool.map(r.detector.find, texts * 3))
    assert together == alone * 3
    assert all(len(f) >= 4 for f in alone)  # every text held findings of several types
