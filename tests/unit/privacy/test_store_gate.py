"""Invariant 7 (DESIGN.md): raw PII never reaches disk - the redactor as the real SQLite
event store's gate, checked on the database file's bytes and on what reads back."""

from __future__ import annotations

import json
from pathlib import Path

from hermes_fed.events.envelope import new_event
from hermes_fed.events.session import ErrorReported, SessionStarted, TrajectoryRecorded
from hermes_fed.privacy import RedactionConfig, Redactor
from hermes_fed.store import open_store

from .conftest import SECRET

EMAIL = "zoe.mbeki@example.org"
KEY = "sk-proj-Zx81Qw72Er63Ty54Ui45Op36As27Df18Gh09Jk"
CARD = "4242 4242 4242 4242"


def test_inv7_raw_pii_never_reaches_disk(tmp_path: Path) -> None:
    # Prepare
    redactor = Redactor(RedactionConfig(), tenant_secret=SECRET)
    db = tmp_path / "tenant.db"
    store = open_store(f"sqlite:///{db}", "tenant-a", gate=redactor.redact_new_events)
    stream = "session-42"
    events = [
        new_event(SessionStarted(user_ref="u-42", model_version="m1"), stream_id=stream,
                  metadata={"deny_terms": ["Umbrella Ltd"]}),
        new_event(TrajectoryRecorded(
            trajectory_id="t-1", task=f"refund {EMAIL} for Umbrella Ltd", task_type="support",
            messages=[
                {"role": "user", "content": f"My card {CARD}, mail {EMAIL}, key {KEY}"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "c1", "name": "refund", "arguments": {"card": CARD, "to": EMAIL}}]},
                {"role": "tool", "tool_call_id": "c1", "content": json.dumps({"ok": EMAIL})},
            ],
            tools=[], final_response=f"Refunded, receipt sent to {EMAIL}"), stream_id=stream),
        new_event(ErrorReported(trajectory_id="t-1", reason=f"{EMAIL} bounced"),
                  stream_id=stream),
    ]
    # Execute
    store.append(events)
    stored = store.read_stream(stream)
    store.engine.dispose()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    # Assert: nothing personal on disk (database, WAL), placeholders consistent on read
    for secret in (EMAIL, KEY, CARD, "Umbrella Ltd", "deny_terms"):
        assert secret.encode() not in raw, secret
    trajectory = stored[1].data
    placeholder = trajectory["messages"][1]["tool_calls"][0]["arguments"]["to"]
    assert placeholder == "<EMAIL_ADDRESS_1>"
    assert trajectory["task"] == "refund <EMAIL_ADDRESS_1> for <DENY_LIST_1>"
    assert stored[2].data["reason"] == "<EMAIL_ADDRESS_1> bounced"
    assert stored[1].metadata["redaction"]["entities"] == {
        "API_KEY": 1, "CREDIT_CARD": 2, "DENY_LIST": 1, "EMAIL_ADDRESS": 5}
    assert store.verify().ok
