"""The memory backend's own behaviour (the conformance suite in tests/integration/store
runs on it too): named logs shared within the process, private ones, no SQL."""

from __future__ import annotations

import pytest

from hermes_fed.errors import ProgrammingError
from hermes_fed.events import NewEvent
from hermes_fed.store import Keyring, open_store
from hermes_fed.store.memory import MemoryBackend


def _accepted(stream: str, n: int) -> list[NewEvent]:
    return [NewEvent(stream, "OutputAccepted", {"trajectory_id": f"t-{i}"}) for i in range(n)]


def test_stores_of_one_name_share_the_log_and_it_outlives_them() -> None:
    # Prepare
    ring = Keyring.generate("acme")
    writer = open_store("memory://unit-shared", "acme", keyring=ring)
    writer.append(_accepted("s-1", 3))
    writer.close()

    # Execute
    reader = open_store("memory://unit-shared", "acme", keyring=ring)
    other_tenant = open_store("memory://unit-shared", "globex")

    # Assert: same rows (tenants apart, like one database file), chain intact
    assert [e.data["trajectory_id"] for e in reader.read()] == ["t-0", "t-1", "t-2"]
    assert reader.head() == 3 and reader.verify().ok
    assert other_tenant.head() == 0


def test_an_unnamed_memory_log_is_the_stores_own() -> None:
    first, second = open_store("memory://", "acme"), open_store("memory://", "acme")
    first.append(_accepted("s-1", 2))
    assert (first.head(), second.head()) == (2, 0)


def test_a_memory_log_runs_no_sql_and_has_no_engine() -> None:
    # Prepare
    store = open_store("memory://", "acme")

    # Execute / Assert: a statement inside the append fails it, and nothing is written
    with pytest.raises(ProgrammingError, match="runs no SQL"):
        store.append(_accepted("s-1", 2), within=lambda tx: tx.execute("SELECT 1"))
    assert store.head() == 0
    with pytest.raises(ProgrammingError, match="projections need a sqlite or postgresql store"):
        _ = store.engine
    assert store.dialect == "memory"


def test_tables_load_back_unchanged() -> None:
    # Prepare: events of two tenants, a subject key, fingerprints
    ring = Keyring.generate("acme")
    store = open_store("memory://", "acme", keyring=ring)
    store.append([NewEvent("s-1", "SessionStarted", {"user_ref": "u", "model_version": "m"}, subject="u")])
    store.append(_accepted("s-1", 2))
    assert isinstance(store.backend, MemoryBackend)
    tables = store.backend.log.tables()

    # Execute
    store.backend.log.load(tables)

    # Assert
    assert store.backend.log.tables() == tables
    assert [len(tables[t]) for t in ("events", "subject_keys", "key_fingerprints")] == [3, 1, 1]
    assert [e.data.get("user_ref") for e in store.read()] == ["u", None, None]
    assert store.verify().ok
    assert store.append(_accepted("s-1", 1))[0].position == 4
