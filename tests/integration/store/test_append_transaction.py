"""Statements of the caller inside an append's transaction (``append(..., within=...)``):
they commit with the events, or nothing does; a database failure, there or anywhere in
the store, comes out as our PEP 249 error of the driver's class."""

from __future__ import annotations

import pytest

from hermes_fed import errors
from hermes_fed.store.backend import AppendTransaction, TransactionHook

from .helpers import MakeStore, accepted, raw, snapshot

pytestmark = pytest.mark.sql  # statements need a SQL database (memory: tests/unit/store)


def _insert_note(text: str) -> TransactionHook:
    def within(tx: AppendTransaction) -> None:
        p = tx.placeholder
        tx.execute(f"INSERT INTO notes (n, text) VALUES ({p}, {p})", (1, text))

    return within


def test_statements_within_commit_with_the_events(make_store: MakeStore) -> None:
    # Prepare
    store = make_store()
    raw(store, "CREATE TABLE notes (n INTEGER PRIMARY KEY, text VARCHAR(20))")

    # Execute
    results = store.append(accepted("session-1", 2), within=_insert_note("first"))
    seen: list[list[tuple[object, ...]]] = []
    store.append(
        accepted("session-2", 1), within=lambda tx: seen.append(tx.execute("SELECT COUNT(*) FROM events"))
    )

    # Assert: the hook saw this append's own row, uncommitted to anyone else yet
    assert [r.position for r in results] == [1, 2]
    assert raw(store, "SELECT n, text FROM notes") == [(1, "first")]
    assert seen == [[(3,)]]


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            "INSERT INTO notes (n, text) VALUES (1, 'again')",
            {"sqlite": errors.IntegrityError, "postgresql": errors.IntegrityError},
        ),
        (
            "INSERT INTO no_such_table VALUES (1)",
            {"sqlite": errors.OperationalError, "postgresql": errors.ProgrammingError},
        ),
    ],
)
def test_a_failing_statement_within_writes_nothing_and_names_the_class(
    make_store: MakeStore, statement: str, expected: dict[str, type[Exception]]
) -> None:
    # Prepare: a note already there
    store = make_store()
    raw(store, "CREATE TABLE notes (n INTEGER PRIMARY KEY, text VARCHAR(20))")
    store.append(accepted("session-1", 1), within=_insert_note("first"))
    before = snapshot(store), raw(store, "SELECT * FROM notes")

    # Execute
    with pytest.raises(errors.DatabaseError, match="append failed, nothing written") as caught:
        store.append(accepted("session-2", 3), within=lambda tx: tx.execute(statement))

    # Assert: the driver's class, as ours; neither the events nor the statement stayed
    assert type(caught.value) is expected[store.dialect]
    assert (snapshot(store), raw(store, "SELECT * FROM notes")) == before
    assert store.append(accepted("session-2", 1))[0].position == 2


def test_a_database_failure_on_read_is_ours_too(make_store: MakeStore) -> None:
    # Prepare: the events table is gone (an operator's mistake)
    store = make_store()
    store.append(accepted("session-1", 1))
    raw(store, "DROP TABLE events")
    expected = {"sqlite": errors.OperationalError, "postgresql": errors.ProgrammingError}[store.dialect]

    # Execute / Assert: "no such table" is an OperationalError in sqlite3, UndefinedTable a
    # ProgrammingError in psycopg; each comes out as ours of the same name
    with pytest.raises(expected, match="cannot read the event log"):
        list(store.read())
    with pytest.raises(expected, match="cannot read the event log"):
        store.head()
