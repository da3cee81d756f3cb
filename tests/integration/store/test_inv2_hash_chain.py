"""Invariant 2: tamper-evident. ``verify`` recomputes the chain over the stored bytes and
names the first bad position, for tampering done with raw SQL after dropping the guards."""

from __future__ import annotations

import itertools

import pytest

from hermes_fed.events import NewEvent
from hermes_fed.store import Keyring, SqlEventStore
from hermes_fed.store.chain import GENESIS

from .helpers import MakeStore, accepted, drop_guards, raw, trajectory


def _log_of_ten(make_store: MakeStore, keyring: Keyring | None = None) -> SqlEventStore:
    store = make_store(keyring=keyring)
    for i in range(5):
        store.append(accepted(f"session-{i}", 2))
    assert store.verify().ok
    drop_guards(store)
    return store


def test_inv2_intact_log_verifies(make_store: MakeStore) -> None:
    # Prepare
    store = make_store(keyring=Keyring.generate("acme"))
    store.append(accepted("session-1", 7))

    # Execute
    report = store.verify()
    events = list(store.read())

    # Assert
    assert report.ok and report.checked == 7 and report.head == 7 and report.first_bad_position is None
    assert events[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert str(report) == "ok: 7 events, chain intact up to position 7"


def test_inv2_empty_log_verifies(make_store: MakeStore) -> None:
    report = make_store().verify()
    assert report.ok and report.checked == 0 and report.head == 0


@pytest.mark.parametrize("encrypted", [False, True])
def test_inv2_altered_data_is_detected_at_its_position(make_store: MakeStore, encrypted: bool) -> None:
    # Prepare
    store = _log_of_ten(make_store, Keyring.generate("acme") if encrypted else None)
    if encrypted:
        # flip one byte of the ciphertext
        blob = bytearray(raw(store, "SELECT data FROM events WHERE position = 6")[0][0])
        blob[-1] ^= 1
        new = bytes(blob)
    else:
        new = b'{"trajectory_id":"forged"}'

    # Execute
    raw(store, "UPDATE events SET data = :d WHERE position = 6", {"d": new})
    report = store.verify()

    # Assert
    assert not report.ok
    assert report.first_bad_position == 6 and report.checked == 5
    assert "hash mismatch" in report.reason
    assert "BROKEN at position 6" in str(report)


@pytest.mark.parametrize(
    ("sql", "bad"),
    [
        ("UPDATE events SET metadata = :m WHERE position = 4", 4),
        ("UPDATE events SET stream_id = 'session-x' WHERE position = 9", 9),
        ("UPDATE events SET type = 'RetryRequested' WHERE position = 1", 1),
        ("UPDATE events SET occurred_at = occurred_at + 1 WHERE position = 10", 10),
    ],
)
def test_inv2_altered_envelope_or_metadata_is_detected(make_store: MakeStore, sql: str, bad: int) -> None:
    store = _log_of_ten(make_store)
    raw(store, sql, {"m": b'{"actor":"mallory"}'})
    assert store.verify().first_bad_position == bad


def test_inv2_rehashed_row_breaks_the_next_link(make_store: MakeStore) -> None:
    # Prepare: the attacker alters row 3 and recomputes its hash (but not the rest of the chain)
    store = _log_of_ten(make_store)
    raw(store, "UPDATE events SET hash = :h WHERE position = 3", {"h": b"\x01" * 32})

    # Execute
    report = store.verify()

    # Assert: row 3's own hash no longer matches its content
    assert report.first_bad_position == 3


def test_inv2_deleted_row_is_detected(make_store: MakeStore) -> None:
    # Prepare
    store = _log_of_ten(make_store)

    # Execute
    raw(store, "DELETE FROM events WHERE position = 4")
    report = store.verify()

    # Assert
    assert not report.ok and report.first_bad_position == 4
    assert "position 4 is missing" in report.reason


def test_inv2_swapped_rows_are_detected(make_store: MakeStore) -> None:
    # Prepare: exchange the positions of rows 3 and 7 (everything else kept byte-for-byte)
    store = _log_of_ten(make_store)

    # Execute
    raw(store, "UPDATE events SET position = -1 WHERE position = 3")
    raw(store, "UPDATE events SET position = 3 WHERE position = 7")
    raw(store, "UPDATE events SET position = 7 WHERE position = -1")
    report = store.verify()

    # Assert
    assert not report.ok and report.first_bad_position == 3


def test_inv2_chain_covers_ciphertext_so_reading_is_not_needed(make_store: MakeStore) -> None:
    # Prepare: a log verified by a process that holds no key ring at all
    ring = Keyring.generate("acme")
    writer = make_store(keyring=ring)
    writer.append([NewEvent("session-1", "OutputAccepted", {"trajectory_id": "t"})] * 1)
    writer.append(accepted("session-1", 3))

    # Execute
    report = make_store().verify()

    # Assert
    assert report.ok and report.checked == 4


def test_inv2_byte_columns_are_stored_as_blobs_of_the_hashed_bytes(make_store: MakeStore) -> None:
    # Prepare: the SQLite append binds its byte columns as bytearray (the sqlite3 module's
    # fast path); what lands must still be a BLOB of exactly the bytes the chain hashed.
    ring = Keyring.generate("acme")
    store = make_store(keyring=ring)
    store.append([*accepted("session-1", 2), trajectory("session-2", user="alice")])
    columns = ("event_id", "data", "personal", "metadata", "prev_hash", "hash")

    # Execute
    stored = raw(store, f"SELECT {', '.join(columns)} FROM events ORDER BY position")
    events = list(store.read())
    types = (
        raw(store, f"SELECT {', '.join(f'typeof({c})' for c in columns)} FROM events ORDER BY position")
        if store.dialect == "sqlite"
        else []
    )

    # Assert
    assert store.verify().ok
    for row, event in zip(stored, events, strict=True):
        event_id, data, _personal, metadata, prev_hash, digest = (
            None if v is None else bytes(v) for v in row
        )
        assert (event_id, prev_hash, digest) == (event.event_id.bytes, event.prev_hash, event.hash)
        assert isinstance(data, bytes) and len(data) > 0 and metadata == b"{}"
    assert stored[2][2] is not None and [r[2] for r in stored[:2]] == [None, None]
    assert all(t == ("blob", "blob", "null", "blob", "blob", "blob") for t in types[:2])
    assert store.dialect != "sqlite" or types[2] == ("blob",) * 6
