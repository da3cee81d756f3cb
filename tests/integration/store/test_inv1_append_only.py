"""Invariant 1: append-only. The API has no update/delete, and the database itself refuses
UPDATE, DELETE (and TRUNCATE on PostgreSQL) on the events table."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from hermes_fed.store import EventStore, SqlEventStore

from .helpers import MakeStore, accepted, raw, snapshot


def test_inv1_api_has_no_update_or_delete() -> None:
    # Execute
    names = {n for n in {*dir(EventStore), *dir(SqlEventStore)} if not n.startswith("_")}

    # Assert: the only ways to change the log are append and the (append-recorded) erasure
    mutating = {n for n in names if any(w in n for w in ("update", "delete", "remove", "truncate", "edit"))}
    assert mutating == set()
    assert {"append", "erase_subject"} <= names


@pytest.mark.sql
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET data = :junk WHERE position = 2",
        "UPDATE events SET stream_version = stream_version + 10",
        "DELETE FROM events WHERE position = 3",
        "DELETE FROM events",
    ],
)
def test_inv1_database_refuses_update_and_delete(make_store: MakeStore, sql: str) -> None:
    # Prepare
    store = make_store()
    store.append(accepted("session-1", 3))
    before = snapshot(store)

    # Execute
    with pytest.raises(sa.exc.DBAPIError) as caught:
        raw(store, sql, {"junk": b"x"})

    # Assert
    assert "append-only (invariant 1)" in str(caught.value.orig)
    assert snapshot(store) == before
    assert store.verify().ok


@pytest.mark.postgres
def test_inv1_postgres_refuses_truncate(pg_url: str, pg_schema: str) -> None:
    # Prepare: PostgreSQL only (SQLite has no TRUNCATE statement)
    from hermes_fed.store import open_store

    store = open_store(pg_url, "acme", schema=pg_schema)
    store.append(accepted("session-1", 2))

    # Execute
    with pytest.raises(sa.exc.DBAPIError) as caught:
        raw(store, "TRUNCATE events")

    # Assert
    assert "TRUNCATE refused" in str(caught.value.orig)
    assert store.head() == 2 and store.verify().ok
    store.close()


@pytest.mark.sql
def test_inv1_guards_survive_reopening(make_store: MakeStore) -> None:
    # Prepare: opening twice re-runs the DDL (idempotent); the triggers must still be there
    first = make_store()
    first.append(accepted("session-1", 1))
    second = make_store()

    # Execute / Assert
    with pytest.raises(sa.exc.DBAPIError):
        raw(second, "DELETE FROM events")
    assert second.head() == 1
