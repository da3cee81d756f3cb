"""Side tables (placeholders, projections, checkpoints) created by several openers at once.

Two processes opening a new SQLite log together (a node daemon and its gateway, or two
writers) both run ``create_all``, which reads the schema and then writes it: SQLite
answers the second writer "database is locked" at once (its busy handler cannot break
that), which once failed a writer in CI. `create_tables` retries it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa

from hermes_fed.store import open_store
from hermes_fed.store.sqlite import create_tables


def _tables(count: int) -> sa.MetaData:
    metadata = sa.MetaData()
    for i in range(count):
        sa.Table(f"side_{i}", metadata, sa.Column("k", sa.String(20), primary_key=True))
    return metadata


def test_openers_racing_on_a_new_sqlite_file_all_succeed(tmp_path: Path) -> None:
    # Prepare: 8 openers, each with its own engine (as separate processes have), one barrier
    url = f"sqlite:///{tmp_path / 'tenant.db'}"
    stores = [open_store(url, "acme") for _ in range(8)]
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
