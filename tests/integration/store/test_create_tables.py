"""Side tables (placeholders, projections, checkpoints) created by several openers at once.

Two processes opening a new SQLite log together (a node daemon and its gateway, or two
writers) both run ``create_all``, which reads the schema and then writes it: SQLite
answers the second writer "database is locked" at once (its busy handler cannot break
that), which once failed a writer in CI. `create_tables` retries it. On PostgreSQL the
second CREATE TABLE fails on the catalog's unique index instead of waiting (it failed the
two-process placeholder test in CI): there `create_tables` holds an advisory lock.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from hermes_fed.store import open_store
from hermes_fed.store.sqlite import create_tables


def _tables(count: int) -> sa.MetaData:
    metadata = sa.MetaData()
    for i in range(count):
        sa.Table(f"side_{i}", metadata, sa.Column("k", sa.String(20), primary_key=True))
    return metadata


@pytest.mark.parametrize("log", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_openers_racing_on_a_new_log_all_succeed(tmp_path: Path, request: pytest.FixtureRequest,
                                                 log: str) -> None:
    # Prepare: 8 openers, each with its own engine (as separate processes have), one barrier
    if log == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'tenant.db'}", None
    else:
        url, schema = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema")
    stores = [open_store(url, "acme", schema=schema) for _ in range(8)]
    metadata = _tables(20)
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def opener(engine: sa.Engine) -> None:
        barrier.wait()
        try:
            create_tables(metadata, engine)
        except BaseException as exc:  # reported below
            errors.append(exc)

    # Execute
    threads = [threading.Thread(target=opener, args=(s.engine,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Assert: nobody failed, every table is there, and a late opener is a no-op
    assert errors == []
    with stores[0].engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
    assert {f"side_{i}" for i in range(20)} <= names
    create_tables(metadata, stores[0].engine)
    for s in stores:
        s.close()
