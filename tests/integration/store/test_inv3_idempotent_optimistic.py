"""Invariant 3: idempotent by ``event_id`` and optimistic by expected stream version; and
batch append is all or nothing."""

from __future__ import annotations

import dataclasses

import pytest

from hermes_fed.errors import ConcurrencyError, IntegrityError, SchemaError, UnknownEventTypeError
from hermes_fed.events import NewEvent
from hermes_fed.store import Keyring

from .helpers import MakeStore, accepted, raw, row_count, session_started, snapshot, trajectory


def test_inv3_duplicate_event_id_is_noop(make_store: MakeStore) -> None:
    # Prepare
    store = make_store()
    events = accepted("session-1", 3)
    first = store.append(events)
    store.append(accepted("session-2", 2))
    before = snapshot(store)

    # Execute: resend the middle event alone, then the whole first batch
    again_one = store.append([events[1]])
    again_all = store.append(events)

    # Assert
    assert again_one[0].position == first[1].position == 2
    assert again_one[0].duplicate and not first[1].duplicate
    assert [r.position for r in again_all] == [1, 2, 3] and all(r.duplicate for r in again_all)
    assert [r.stream_version for r in again_all] == [1, 2, 3]
    assert snapshot(store) == before


def test_inv3_duplicate_is_noop_across_store_instances_and_with_changed_payload(
    make_store: MakeStore,
) -> None:
    # Prepare: the resend comes through another connection and carries different data
    first = make_store()
    original = accepted("session-1")[0]
    pos = first.append([original])[0].position
    other = make_store()
    forged = dataclasses.replace(original, data={"trajectory_id": "different"})

    # Execute
    result = other.append([forged])

    # Assert: the first write wins; the resend changes nothing
    assert result[0].duplicate and result[0].position == pos
    assert [e.data for e in other.read()] == [{"trajectory_id": "t-0"}]


def test_inv3_batch_mixing_new_and_known_ids_writes_only_the_new(make_store: MakeStore) -> None:
    # Prepare
    store = make_store()
    old = accepted("session-1", 2)
    store.append(old)
    new = accepted("session-1", 2)

    # Execute
    results = store.append([old[0], new[0], old[1], new[1]])

    # Assert
    assert [(r.position, r.duplicate) for r in results] == [(1, True), (3, False), (2, True), (4, False)]
    assert [e.stream_version for e in store.read_stream("session-1")] == [1, 2, 3, 4]
    assert store.verify().ok


def test_inv3_same_id_twice_in_one_batch_is_written_once(make_store: MakeStore) -> None:
    store = make_store()
    event = accepted("session-1")[0]
    results = store.append([event, event])
    assert results[0] == results[1] and results[0].position == 1
    assert row_count(store) == 1


def test_inv3_expected_version_matches_then_appends(make_store: MakeStore) -> None:
    # Prepare
    store = make_store()

    # Execute
    store.append(accepted("session-1", 2), expected_versions={"session-1": 0})
    results = store.append(accepted("session-1", 1), expected_versions={"session-1": 2})

    # Assert
    assert results[0].stream_version == 3


@pytest.mark.parametrize(("expected", "actual"), [(0, 2), (1, 2), (5, 2)])
def test_inv3_wrong_expected_version_raises_concurrency_error(
    make_store: MakeStore, expected: int, actual: int
) -> None:
    # Prepare
    store = make_store(keyring=Keyring.generate("acme"))
    store.append(accepted("session-1", actual))
    before = snapshot(store)

    # Execute (bug found: a new subject's key was committed before the events' transaction,
    # so a refused batch left a subject_keys row behind)
    with pytest.raises(ConcurrencyError) as caught:
        store.append(
            [session_started("session-2", "new-user"), *accepted("session-1", 1)],
            expected_versions={"session-1": expected, "session-2": 0},
        )

    # Assert: names stream, actual and expected; nothing of the batch was written
    err = caught.value
    assert (err.stream_id, err.actual, err.expected) == ("session-1", actual, expected)
    assert f"stream session-1 is at version {actual}, append expected {expected}" in str(err)
    assert snapshot(store) == before


def test_inv3_resend_after_the_stream_moved_on_is_still_a_noop(make_store: MakeStore) -> None:
    # Prepare: a client retries an acknowledged append with its (now stale) expected version
    store = make_store()
    batch = accepted("session-1", 1)
    store.append(batch, expected_versions={"session-1": 0})
    store.append(accepted("session-1", 1))

    # Execute
    retry = store.append(batch, expected_versions={"session-1": 0})

    # Assert
    assert retry[0].duplicate and retry[0].position == 1


def test_inv3_concurrent_appenders_with_the_same_expected_version_one_wins(make_store: MakeStore) -> None:
    # Prepare: two writers both read version 1 of a stream
    a, b = make_store(), make_store()
    a.append(accepted("session-1", 1))

    # Execute
    a.append(accepted("session-1", 1), expected_versions={"session-1": 1})
    with pytest.raises(ConcurrencyError):
        b.append(accepted("session-1", 1), expected_versions={"session-1": 1})

    # Assert
    assert [e.stream_version for e in b.read_stream("session-1")] == [1, 2]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (NewEvent("session-9", "OutputAccepted", {"trajectory_id": 7}), SchemaError),
        (NewEvent("session-9", "NoSuchType", {}), UnknownEventTypeError),
        (
            NewEvent("session-9", "OutputAccepted", {"trajectory_id": "t"}, metadata={"x": {1, 2}}),
            SchemaError,
        ),
        (NewEvent("", "OutputAccepted", {"trajectory_id": "t"}), SchemaError),
    ],
)
def test_batch_append_is_all_or_nothing(make_store: MakeStore, bad: NewEvent, error: type[Exception]) -> None:
    # Prepare: one invalid event in the middle of a batch of valid ones
    store = make_store(keyring=Keyring.generate("acme"))
    store.append(accepted("session-0", 2))
    before = snapshot(store)
    # Bug found: with the bad event after an event with a subject, the subject's key was
    # created (committed) before the bad event was validated; now every event is validated
    # before any key is made.
    batch = [*accepted("session-1", 5), trajectory("session-1", user="u-1"), *accepted("session-2", 5), bad]

    # Execute
    with pytest.raises(error):
        store.append(batch)

    # Assert: no event and no subject key written
    assert snapshot(store) == before
    assert store.head() == 2


@pytest.mark.sql
def test_batch_append_database_failure_mid_insert_writes_nothing(make_store: MakeStore) -> None:
    # Prepare: a trigger that fails the INSERT of the 250th row of a 300-event batch, so
    # the database has already taken 249 rows of it when the failure comes; it fails as a
    # constraint would (SQLITE_CONSTRAINT; SQLSTATE 23000 on PostgreSQL), and the driver's
    # IntegrityError comes out as ours (driver errors are mapped class by class)
    store = make_store()
    store.append(accepted("session-1", 3))
    before = snapshot(store)
    if store.dialect == "sqlite":
        raw(
            store,
            "CREATE TRIGGER fail_253 BEFORE INSERT ON events WHEN NEW.position = 253 "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        )
    else:
        raw(
            store,
            "CREATE FUNCTION fail_253() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.position = 253 THEN RAISE EXCEPTION 'injected failure' "
            "USING ERRCODE = 'integrity_constraint_violation'; END IF; "
            "RETURN NEW; END $$",
        )
        raw(store, "CREATE TRIGGER fail_253 BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION fail_253()")

    # Execute
    with pytest.raises(IntegrityError, match="nothing written: injected failure"):
        store.append(accepted("session-2", 300))

    # Assert: nothing torn, and the store goes on at the next position
    assert snapshot(store) == before
    raw(store, "DROP TRIGGER fail_253" + ("" if store.dialect == "sqlite" else " ON events"))
    assert store.append(accepted("session-2", 1))[0].position == 4
    assert store.verify().ok
