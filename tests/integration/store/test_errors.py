"""Clear errors, each named, and nothing changed: a wrong key, a corrupt row, an unknown
event type, a schema violation (names the field and the value's type, never the value)."""

from __future__ import annotations

from typing import Any

import pytest

from hermes_fed.errors import CorruptEventError, KeyringError, SchemaError, UnknownEventTypeError
from hermes_fed.events import Catalog, EventRecord, NewEvent, event_type
from hermes_fed.store import Keyring

from .helpers import MakeStore, accepted, drop_guards, raw, snapshot

PLANTED = "PLANTED-8c1e-jane.doe@example.com"


@pytest.mark.parametrize(
    ("etype", "data", "field", "type_name"),
    [
        ("OutputAccepted", {"trajectory_id": [PLANTED]}, "trajectory_id", "list"),
        ("OutputEdited", {"trajectory_id": "t", "edit_ratio": PLANTED}, "edit_ratio", "str"),
        ("SessionStarted", {"user_ref": {"email": PLANTED}, "model_version": "m"}, "user_ref", "dict"),
        ("TrajectoryJudged", {"trajectory_id": "t", "judge": "j", "score": True}, "score", "bool"),
        (
            "TrajectoryRecorded",
            {
                "trajectory_id": "t",
                "task": PLANTED,
                "task_type": "x",
                "messages": [{"role": "user", "content": PLANTED, "when": {PLANTED}}],
                "tools": [],
                "final_response": PLANTED,
            },
            "messages",
            "set",
        ),
        ("HumanLabeled", {"trajectory_id": "t", "score": 2**70, "note": PLANTED}, "note", "unknown"),
        ("HumanLabeled", {"trajectory_id": PLANTED + "\ud800", "score": 1}, "trajectory_id", "UTF-8"),
    ],
)
def test_schema_violation_names_field_and_type_never_the_value(
    make_store: MakeStore, etype: str, data: dict[str, Any], field: str, type_name: str
) -> None:
    # Prepare
    store = make_store(keyring=Keyring.generate("acme"))
    store.append(accepted("session-0", 1))
    before = snapshot(store)

    # Execute
    with pytest.raises(SchemaError) as caught:
        store.append([NewEvent("session-1", etype, data, subject="u-1")])

    # Assert
    message = str(caught.value)
    assert caught.value.field == field and message.startswith(f"{etype}.{field}:")
    assert type_name in message
    assert PLANTED not in message and "jane" not in message
    assert snapshot(store) == before


def test_unknown_event_type_on_append(make_store: MakeStore) -> None:
    store = make_store()
    with pytest.raises(UnknownEventTypeError, match="'SessionExploded'"):
        store.append([NewEvent("session-1", "SessionExploded", {})])
    assert store.head() == 0


def test_unknown_event_type_on_read_names_it(make_store: MakeStore) -> None:
    # Prepare: written by code that knew the type, read by code that does not
    catalog = Catalog()

    @event_type("Experimental", catalog=catalog)
    class Experimental(EventRecord):
        note: str

    make_store(catalog=catalog).append([NewEvent("x-1", "Experimental", {"note": "n"})])
    reader = make_store(catalog=Catalog())

    # Execute / Assert
    with pytest.raises(UnknownEventTypeError, match="'Experimental'"):
        list(reader.read())
    assert reader.verify().ok  # the chain does not need the catalog


def test_wrong_key_ring_is_refused_at_open_and_changes_nothing(make_store: MakeStore) -> None:
    # Prepare
    store = make_store(keyring=Keyring.generate("acme"))
    store.append(accepted("session-1", 3))
    before = snapshot(store)
    fingerprints = raw(store, "SELECT * FROM key_fingerprints ORDER BY key_id")

    # Execute
    with pytest.raises(KeyringError, match="'k1' in the key ring is not the key this log was written with"):
        make_store(keyring=Keyring.generate("acme"))

    # Assert
    assert snapshot(store) == before
    assert raw(store, "SELECT * FROM key_fingerprints ORDER BY key_id") == fingerprints


def test_key_ring_of_another_tenant_is_refused(make_store: MakeStore) -> None:
    with pytest.raises(KeyringError, match="belongs to tenant 'globex'"):
        make_store(keyring=Keyring.generate("globex"))


def test_key_ring_missing_the_rows_key_names_it_on_read(make_store: MakeStore) -> None:
    # Prepare: rows under k1; a ring that holds only some other key id
    store = make_store(keyring=Keyring.generate("acme"))
    store.append(accepted("session-1", 1))
    other = Keyring.generate("acme")
    other.keys = {"k7": other.keys["k1"]}
    other.active = "k7"

    # Execute / Assert
    with pytest.raises(KeyringError, match="key 'k1' of tenant 'acme' is not in the key ring"):
        list(make_store(keyring=other).read())


def test_encrypted_log_without_key_ring_names_the_key(make_store: MakeStore) -> None:
    make_store(keyring=Keyring.generate("acme")).append(accepted("session-1", 1))
    with pytest.raises(KeyringError, match="position 1 is encrypted with key 'k1'"):
        list(make_store().read())


@pytest.mark.parametrize("encrypted", [True, False])
def test_corrupt_row_names_the_position(make_store: MakeStore, encrypted: bool) -> None:
    # Prepare
    ring = Keyring.generate("acme") if encrypted else None
    store = make_store(keyring=ring)
    store.append(accepted("session-1", 5))
    drop_guards(store)
    junk = b"\x00" * 40 if encrypted else b"{not json"
    raw(store, "UPDATE events SET data = :d WHERE position = 3", {"d": junk})

    # Execute
    with pytest.raises(CorruptEventError, match="position 3") as caught:
        list(store.read())

    # Assert: the rows before it are readable; verify names the same position
    assert "fails authentication" in str(caught.value) if encrypted else "not valid JSON" in str(caught.value)
    assert [e.position for e in store.read(limit=2)] == [1, 2]
    assert store.verify().first_bad_position == 3


def test_corrupt_personal_fields_name_the_position(make_store: MakeStore) -> None:
    # Prepare: one flipped bit in the sealed personal part (what the hash chain would also flag)
    ring = Keyring.generate("acme")
    store = make_store(keyring=ring)
    store.append(
        [NewEvent("session-1", "SessionStarted", {"user_ref": "u", "model_version": "m"}, subject="u")]
    )
    sealed = bytearray(raw(store, "SELECT personal FROM events WHERE position = 1")[0][0])
    sealed[-1] ^= 1
    drop_guards(store)
    raw(store, "UPDATE events SET personal = :p WHERE position = 1", {"p": bytes(sealed)})

    # Execute / Assert: eager reads fail during iteration, lazy reads at the first access
    with pytest.raises(CorruptEventError, match="position 1: personal fields fail authentication"):
        list(store.read())
    (event,) = store.read(lazy=True)
    assert event.type == "SessionStarted" and not event.decoded
    with pytest.raises(CorruptEventError, match="position 1: personal fields fail authentication"):
        _ = event.data


def test_personal_part_moved_to_another_event_fails(make_store: MakeStore) -> None:
    # Prepare: the sealed part of event 2 (same subject, same key) copied onto event 1
    ring = Keyring.generate("acme")
    store = make_store(keyring=ring)
    store.append(
        [
            NewEvent("session-1", "SessionStarted", {"user_ref": "u", "model_version": "m"}, subject="u"),
            NewEvent("session-2", "SessionStarted", {"user_ref": "u", "model_version": "m"}, subject="u"),
        ]
    )
    other = raw(store, "SELECT personal FROM events WHERE position = 2")[0][0]
    drop_guards(store)
    raw(store, "UPDATE events SET personal = :p WHERE position = 1", {"p": bytes(other)})

    # Execute / Assert: the event id is bound into the authentication tag
    with pytest.raises(CorruptEventError, match="position 1: personal fields fail authentication"):
        list(store.read())
