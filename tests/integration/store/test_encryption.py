"""Encryption at rest: the tenant data key, key rotation, per-subject keys and
crypto-shredding (``erase_subject``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hermes_fed.errors import KeyringError, SubjectErasedError
from hermes_fed.events import NewEvent
from hermes_fed.store import Keyring, SqlEventStore

from .helpers import MakeStore, accepted, raw, session_started, trajectory

PLANTED_TASK = "PLANTED-TASK-5b0c please email bob@example.org"
PLANTED_META = "PLANTED-META-77aa"


def _sqlite_path(store: SqlEventStore) -> Path:
    database = store.engine.url.database
    assert database is not None
    return Path(database)


def _disk_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


@pytest.mark.parametrize("keyring", [True, False], ids=["encrypted", "control-plaintext"])
def test_plaintext_of_event_data_never_reaches_the_sqlite_file(tmp_path: Path, keyring: bool) -> None:
    # Prepare
    from hermes_fed.store import open_store

    url = f"sqlite:///{tmp_path / 'acme.db'}"
    ring = Keyring.generate("acme") if keyring else None
    store = open_store(url, "acme", keyring=ring)

    # Execute: personal and non-personal fields, with and without a subject
    user = "user-PLANTED-42"
    first = session_started("session-1", user)
    store.append(
        [
            first if keyring else dataclasses.replace(first, subject=None),
            trajectory("session-1", PLANTED_TASK),
        ]
    )
    store.append(
        [
            NewEvent(
                "session-2", "ErrorReported", {"trajectory_id": "t", "reason": PLANTED_TASK}, metadata={}
            ),
            trajectory("session-2", PLANTED_TASK),
        ]
    )
    on_disk_open = _disk_bytes(_sqlite_path(store))  # while open: the WAL holds the rows
    store.close()
    on_disk_closed = _disk_bytes(_sqlite_path(store))

    # Assert (the control run proves the scan would see the plaintext)
    for needle in (b"PLANTED-TASK-5b0c", b"bob@example.org", b"user-PLANTED-42"):
        assert (needle in on_disk_open + on_disk_closed) is not keyring


def test_metadata_is_not_encrypted_by_design(make_store: MakeStore) -> None:
    # Metadata (actor, correlation ids, redaction report) is stored in clear; documented here
    # so that a change of that decision is a deliberate one.
    store = make_store(keyring=Keyring.generate("acme"))
    store.append(accepted("session-1", 1, correlation=PLANTED_META))
    stored = bytes(raw(store, "SELECT metadata FROM events")[0][0])
    assert PLANTED_META.encode() in stored


def test_key_rotation_keeps_old_rows_readable_and_new_rows_use_the_new_key(make_store: MakeStore) -> None:
    # Prepare
    ring = Keyring.generate("acme")
    before = make_store(keyring=ring)
    before.append([session_started("session-1", "u-1"), trajectory("session-1", "old task")])

    # Execute
    new_id = ring.rotate()
    after = make_store(keyring=ring)
    after.append([trajectory("session-1", "new task"), session_started("session-2", "u-2")])
    events = list(after.read())

    # Assert
    assert new_id == "k2" and ring.active == "k2"
    assert [r[0] for r in raw(after, "SELECT key_id FROM events ORDER BY position")] == [
        "k1",
        "k1",
        "k2",
        "k2",
    ]
    assert [e.data.get("task") for e in events] == [None, "old task", "new task", None]
    assert [e.data.get("user_ref") for e in events] == ["u-1", None, None, "u-2"]
    wraps = dict(raw(after, "SELECT subject_id, wrap_key_id FROM subject_keys"))
    assert sorted(wraps.values()) == ["k1", "k2"]  # subject keys: wrapped under the key active then
    assert sorted(r[0] for r in raw(after, "SELECT key_id FROM key_fingerprints")) == ["k1", "k2"]
    assert after.verify().ok


def test_key_ring_round_trips_through_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    ring = Keyring.generate("acme")
    ring.rotate()
    path = tmp_path / "keys" / "acme.json"

    # Execute
    ring.save(path)
    monkeypatch.setenv("HERMES_FED_KEYRING", ring.to_json())
    from_file, from_env = Keyring.from_file(path), Keyring.from_env()

    # Assert
    assert path.stat().st_mode & 0o777 == 0o600
    for other in (from_file, from_env, Keyring.load_or_create(path, "acme")):
        assert (other.tenant_id, other.active, other.keys, other.hmac_secret) == (
            ring.tenant_id,
            ring.active,
            ring.keys,
            ring.hmac_secret,
        )
    with pytest.raises(KeyringError, match="belongs to tenant 'acme', not 'globex'"):
        Keyring.load_or_create(path, "globex")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("not json", "malformed key ring"),
        (
            '{"tenant_id": "a", "active": "k1", "keys": {"k1": "!!"}, "hmac_secret": "AAAA"}',
            "not valid base64",
        ),
        (
            '{"tenant_id": "a", "active": "k2", "keys": {"k1": "AAAA"}, "hmac_secret": "AAAA"}',
            "active key 'k2'",
        ),
        (
            '{"tenant_id": "a", "active": "k1", "keys": {"k1": "AAAA"}, "hmac_secret": "AAAA"}',
            "must be 32 bytes",
        ),
    ],
)
def test_malformed_key_ring_is_a_named_keyring_error(text: str, words: str) -> None:
    with pytest.raises(KeyringError, match=words):
        Keyring.from_json(text)


def test_erase_subject_shreds_personal_fields_and_keeps_the_chain(make_store: MakeStore) -> None:
    # Prepare: two subjects; the personal fields of session-1 follow its subject
    ring = Keyring.generate("acme")
    store = make_store(keyring=ring)
    store.append([session_started("session-1", "alice"), trajectory("session-1", "alice's task")])
    store.append([session_started("session-2", "bob"), trajectory("session-2", "bob's task")])
    alice_id = ring.subject_id("alice")
    assert raw(store, "SELECT COUNT(*) FROM subject_keys WHERE subject_id = :s", {"s": alice_id}) == [(1,)]

    # Execute
    erased_at = store.erase_subject("alice", reason="GDPR art. 17")
    events = list(make_store(keyring=ring).read())  # a fresh reader: nothing cached

    # Assert
    by_pos = {e.position: e for e in events}
    assert by_pos[1].data["user_ref"] is None and by_pos[1].erased_fields == ("user_ref",)
    assert by_pos[2].erased_fields == ("final_response", "messages", "task")
    assert by_pos[2].data["task"] is None and by_pos[2].data["task_type"] == "arithmetic"
    assert by_pos[3].data["user_ref"] == "bob" and by_pos[4].data["task"] == "bob's task"
    assert by_pos[erased_at].type == "SubjectErased" and by_pos[erased_at].data["user_ref"] is None
    assert by_pos[erased_at].data["reason"] == "GDPR art. 17"
    assert raw(store, "SELECT COUNT(*) FROM subject_keys WHERE subject_id = :s", {"s": alice_id}) == [(0,)]
    with pytest.raises(SubjectErasedError, match="position 1"):
        by_pos[1].record()
    assert store.verify().ok


def test_erase_subject_is_seen_by_a_reader_that_read_the_subject_before(make_store: MakeStore) -> None:
    # Bug found: each store instance cached unwrapped subject keys forever, so a long-running
    # reader (a daemon's projection runner) kept decrypting a subject erased by another
    # process. Keys are now cached only within one read.
    ring = Keyring.generate("acme")
    daemon = make_store(keyring=ring)
    daemon.append([session_started("session-1", "alice")])
    assert next(iter(daemon.read())).data["user_ref"] == "alice"  # caches alice's key

    # Execute: another process (its own store instance) erases alice
    make_store(keyring=ring).erase_subject("alice")

    # Assert
    assert next(iter(daemon.read())).data["user_ref"] is None


def test_subject_without_key_ring_is_refused(make_store: MakeStore) -> None:
    store = make_store()
    with pytest.raises(KeyringError, match="need a key ring"):
        store.append([session_started("session-1", "alice")])
    with pytest.raises(KeyringError, match="erasure needs a key ring"):
        store.erase_subject("alice")
    assert store.head() == 0


def test_new_events_of_an_erased_subject_get_a_fresh_key(make_store: MakeStore) -> None:
    # Prepare
    ring = Keyring.generate("acme")
    store = make_store(keyring=ring)
    store.append([session_started("session-1", "alice")])
    store.erase_subject("alice")

    # Execute: alice comes back later (a new session, new consent)
    store.append([session_started("session-9", "alice")])
    events = list(make_store(keyring=ring).read())

    # Assert: old data stays shredded; the new session is readable
    assert [e.data["user_ref"] for e in events if e.type == "SessionStarted"] == [None, "alice"]


def test_subject_id_is_the_keyed_hash_of_the_user_ref() -> None:
    # Independent reference for the pseudonymous subject id (stable across releases: it
    # keys the subject_keys table, so a change would orphan every subject key).
    import hashlib
    import hmac

    ring = Keyring("acme", "k1", {"k1": bytes(32)}, b"s" * 32)
    expected = hmac.new(b"s" * 32, b"subject:alice", hashlib.sha256).hexdigest()[:32]
    assert ring.subject_id("alice") == expected
    assert ring.subject_id("bob") != expected
