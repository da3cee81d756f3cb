"""Reading with ``lazy=True`` (payload decoded on first access) and ``types=`` (a filter
in the query), and the refusal of a log in an older stored format."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from hermes_fed.errors import OperationalError
from hermes_fed.store import Keyring, open_store

from .helpers import MakeStore, accepted, session_started, trajectory


def test_lazy_read_decodes_on_access_to_the_same_events(make_store: MakeStore) -> None:
    # Prepare: personal and public fields, two subjects
    store = make_store(keyring=Keyring.generate("acme"))
    store.append([session_started("s-1", "alice"), trajectory("s-1", "task one"), *accepted("s-1", 2)])
    store.append([session_started("s-2", "bob"), trajectory("s-2", "task two")])

    # Execute
    eager = list(store.read())
    lazy = list(store.read(lazy=True))

    # Assert: the envelope is there before any decoding; the payload then equals the eager one
    assert [e.position for e in lazy] == [1, 2, 3, 4, 5, 6]
    assert not any(e.decoded for e in lazy)
    assert [e.type for e in lazy] == [e.type for e in eager]
    assert [dict(e.data) for e in lazy] == [dict(e.data) for e in eager]
    assert all(e.decoded for e in lazy)
    assert lazy == eager
    assert lazy[1].data["task"] == "task one"


def test_lazy_read_of_an_erased_subject_names_the_erased_fields(make_store: MakeStore) -> None:
    # Prepare
    store = make_store(keyring=Keyring.generate("acme"))
    store.append([session_started("s-1", "alice"), trajectory("s-1", "secret task")])
    store.erase_subject("alice")

    # Execute
    events = list(store.read(lazy=True))

    # Assert: personal fields read as None, public ones survive
    recorded = events[1]
    assert recorded.erased_fields == ("final_response", "messages", "task")
    assert recorded.data["task"] is None and recorded.data["task_type"] == "arithmetic"
    assert events[0].erased_fields == ("user_ref",)


def test_types_filter_reads_only_those_types_and_limit_counts_them(make_store: MakeStore) -> None:
    # Prepare
    store = make_store(keyring=Keyring.generate("acme"))
    store.append([session_started("s-1", "alice"), *accepted("s-1", 3), trajectory("s-1")])

    # Execute
    feedback = list(store.read(types={"OutputAccepted"}))
    first_two = list(store.read(types=["OutputAccepted", "TrajectoryRecorded"], limit=2))
    after = list(store.read(after=3, types={"OutputAccepted", "TrajectoryRecorded"}))
    none = list(store.read(types=[]))

    # Assert
    assert [e.position for e in feedback] == [2, 3, 4]
    assert [e.position for e in first_two] == [2, 3]
    assert [(e.position, e.type) for e in after] == [(4, "OutputAccepted"), (5, "TrajectoryRecorded")]
    assert none == []


def test_log_in_the_older_stored_format_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    # Prepare: an events table as the first stored format made it (no key_ref/personal)
    path = tmp_path / "old.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE events (tenant_id VARCHAR(64) NOT NULL, position BIGINT NOT NULL, "
            "event_id BLOB NOT NULL, stream_id VARCHAR(200) NOT NULL, stream_version INTEGER NOT NULL, "
            "type VARCHAR(100) NOT NULL, schema_version INTEGER NOT NULL, occurred_at BIGINT NOT NULL, "
            "recorded_at BIGINT NOT NULL, key_id VARCHAR(32) NOT NULL, subject_id VARCHAR(64), "
            "data BLOB NOT NULL, metadata BLOB NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL, "
            "PRIMARY KEY (tenant_id, position))"
        )
    engine.dispose()

    # Execute / Assert
    with pytest.raises(OperationalError, match="older hermes-fed store format"):
        open_store(f"sqlite:///{path}", "acme", keyring=Keyring.generate("acme"))


def test_eager_replay_equals_the_general_decoder_event_for_event(make_store: MakeStore) -> None:
    # Prepare: the replay's one-frame decoder against read_stream's general one, over
    # personal and public fields, a subject kept and a subject erased
    store = make_store(keyring=Keyring.generate("acme"))
    store.append([session_started("s-1", "alice"), trajectory("s-1", "task one"), *accepted("s-1", 2)])
    store.append([session_started("s-2", "bob"), trajectory("s-2", "task two")])
    store.erase_subject("alice")

    # Execute
    replayed = list(store.read())
    by_stream = {s: store.read_stream(s) for s in ("s-1", "s-2")}

    # Assert
    for stream_id, events in by_stream.items():
        mine = [e for e in replayed if e.stream_id == stream_id]
        assert mine == events
        assert [dict(e.data) for e in mine] == [dict(e.data) for e in events]
        assert [e.erased_fields for e in mine] == [e.erased_fields for e in events]
    assert by_stream["s-1"][1].data["task"] is None
    assert by_stream["s-2"][1].data["task"] == "task two"
