"""A user_ref that is personal data is stored as its keyed pseudonym (U1), erasure by the
original id still works, and A/B assignment stays where it was (U4)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hermes_fed.events import NewEvent
from hermes_fed.privacy import RedactionConfig, Redactor
from hermes_fed.privacy.placeholder_store import StorePlaceholderIndex, staged_gate
from hermes_fed.privacy.pseudonyms import pseudonymous_ref
from hermes_fed.serving.assignment import Arm, assign
from hermes_fed.serving.plan import PlanArm, TrafficPlan
from hermes_fed.store import Keyring
from tenant_node.config import node_config_from_mapping
from tenant_node.ingest.runtime import open_node_store
from tenant_node.ingest.service import record_assignment

EMAIL = "zoe.mbeki@example.org"
PHONE = "+27 82 555 0143"


def _session(stream: str, user: str) -> list[NewEvent]:
    return [
        NewEvent(stream, "SessionStarted", {"user_ref": user, "model_version": "m-1"}, subject=user),
        NewEvent(stream, "TrajectoryRecorded", {
            "trajectory_id": f"t-{stream}", "task": "add 2 and 3", "task_type": "arithmetic",
            "messages": [{"role": "user", "content": "add 2 and 3"}], "tools": [],
            "final_response": "5"}),
    ]


def _gated(store: object, keyring: Keyring) -> None:
    index = StorePlaceholderIndex(store, keyring)  # type: ignore[arg-type]
    store.gate = staged_gate(Redactor(RedactionConfig(), keyring.hmac_secret), index)  # type: ignore[attr-defined]


def test_u1_the_node_store_never_holds_an_email_or_phone_user_ref(tmp_path: Path) -> None:
    # Prepare: the node's own store (open_node_store, default config: SQLite file)
    config = node_config_from_mapping({"tenant_id": "acme", "token": "t" * 20,
                                       "data_dir": str(tmp_path / "node")})
    store = open_node_store(config)
    assert store.keyring is not None
    secret = store.keyring.hmac_secret
    # Execute
    store.append([*_session("session-1", EMAIL), *_session("session-2", PHONE)])
    started = [store.read_stream(s)[0] for s in ("session-1", "session-2")]
    with store.engine.connect() as conn:
        subjects = {r[0] for r in conn.exec_driver_sql("SELECT subject_id FROM events")}
    store.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "node").rglob("*") if p.is_file()
                   and "keyring" not in p.name)
    # Assert: the pseudonyms are stored, as data and as subjects; no byte of the originals
    assert [e.data["user_ref"] for e in started] == [
        pseudonymous_ref(secret, EMAIL), pseudonymous_ref(secret, PHONE)]
    assert started[0].data["user_ref"].startswith("ref-")
    assert subjects == {store.keyring.subject_id(pseudonymous_ref(secret, u)) for u in (EMAIL, PHONE)}
    for original in (EMAIL, "zoe.mbeki", PHONE, "82 555 0143", "825550143"):
        assert original.encode() not in raw, original


def test_erasure_by_the_original_id(make_store: Callable[..., object]) -> None:
    # Prepare: a session of an e-mail user through the gate, and another user's
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    _gated(store, keyring)
    store.append([*_session("session-1", EMAIL), *_session("session-2", "u-7")])  # type: ignore[attr-defined]
    # Execute: erase by the e-mail, as a deployer knows the user
    store.erase_subject(EMAIL, reason="request")  # type: ignore[attr-defined]
    # Assert: the e-mail user's personal fields are unreadable, the other user's are not
    first, second = store.read_stream("session-1"), store.read_stream("session-2")  # type: ignore[attr-defined]
    assert first[0].erased_fields == ("user_ref",) and first[1].erased
    assert second[0].data["user_ref"] == "u-7" and not second[1].erased
    erased = [e for e in store.read() if e.type == "SubjectErased"]  # type: ignore[attr-defined]
    stored_ref = pseudonymous_ref(keyring.hmac_secret, EMAIL)
    assert erased[0].stream_id == f"subject-{keyring.subject_id(stored_ref)}"
    assert store.verify().ok  # type: ignore[attr-defined]


def test_erasure_by_the_original_id_of_a_log_written_before_pseudonyms(
    make_store: Callable[..., object],
) -> None:
    # Prepare: the e-mail stored raw (no gate: a log from before this version)
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    store.append(_session("session-1", EMAIL))  # type: ignore[attr-defined]
    # Execute
    store.erase_subject(EMAIL)  # type: ignore[attr-defined]
    # Assert: the raw subject's key is gone too
    events = store.read_stream("session-1")  # type: ignore[attr-defined]
    assert events[0].erased_fields == ("user_ref",) and events[1].erased


@pytest.mark.parametrize("user", [EMAIL, PHONE, "u-42"])
def test_u4_assignment_is_the_same_in_the_gateway_ingest_and_before(
    make_store: Callable[..., object], user: str
) -> None:
    # Prepare: a three-arm test; the arm as it was computed before pseudonyms existed
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    _gated(store, keyring)
    secret = keyring.hmac_secret
    arms = [Arm("control", 0.4), Arm("candidate", 0.3), Arm("canary", 0.3)]
    before, _ = assign(secret, "test-1", user, arms)
    plan = TrafficPlan("test-1", (PlanArm("control", "v1", 0.4), PlanArm("candidate", "v2", 0.3),
                                  PlanArm("canary", "v3", 0.3)), "control")
    # Execute: ingest's AssignVariant path twice, and the gateway's routing
    arm, _, first = record_assignment(store, "test-1", user, arms, secret)  # type: ignore[arg-type]
    again, _, second = record_assignment(store, "test-1", user, arms, secret)  # type: ignore[arg-type]
    routed = plan.route(secret, user)
    # Assert: one arm everywhere (sticky), one stored assignment, under the stored ref
    assert arm.name == again.name == routed.arm.name == before.name
    assert second.duplicate and second.position == first.position
    (stored,) = store.read_stream("abtest-test-1")  # type: ignore[attr-defined]
    assert stored.data == {"ab_test_id": "test-1", "user_ref": pseudonymous_ref(secret, user),
                           "variant": before.name}
