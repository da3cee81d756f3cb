"""Invariant 2: tamper-evident. ``verify`` recomputes the chain over the stored bytes and
names the first bad position, for tampering done with raw SQL after dropping the guards."""

from __future__ import annotations

import itertools

import pytest

from hermes_fed.events import NewEvent
from hermes_fed.store import Keyring, SqlEventStore
from hermes_fed.store.chain import GENESIS

from .helpers import MakeStore, accepted, drop_guards, raw


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
