"""The node's projection pump: a locked database defers a projection (a warning, resumed on
the next tick from its checkpoint); a failing projection is an error; neither stops the pump."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event as sa_event

from hermes_fed.events import NewEvent, StoredEvent
from hermes_fed.projections import Handler, Projection
from hermes_fed.store import SqlEventStore, open_store
from tenant_node.ingest.metrics import NodeMetrics
from tenant_node.ingest.runtime import ProjectionPump

_MODULE = __name__


class Ended(Projection):
    """Counts SessionEnded events."""

    name = "pump_test_ended"

    def __init__(self) -> None:
        self.metadata = sa.MetaData()
        self.table = sa.Table("pump_ended", self.metadata, sa.Column("stream_id", sa.String(200)))

    def handlers(self) -> Mapping[str, Handler]:
        return {"SessionEnded": self._ended}

    def _ended(self, conn: sa.Connection, e: StoredEvent) -> None:
        conn.execute(self.table.insert().values(stream_id=e.stream_id))


class Broken(Ended):
    name = "pump_test_broken"

    def _ended(self, conn: sa.Connection, e: StoredEvent) -> None:
        raise RuntimeError("a bug in a handler")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlEventStore]:
    s = open_store(f"sqlite:///{tmp_path / 'node.db'}", "acme")
    s.append([NewEvent(f"session-{i}", "SessionEnded", {}) for i in range(5)])

    # Registered after the store's own listener: its connections wait 0.2 s for a lock,
    # not the production 60 s, so a held lock fails within the test.
    @sa_event.listens_for(s.engine, "connect")
    def _short_wait(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=200")

    s.engine.dispose()
    yield s
    s.close()


def _lag(metrics: NodeMetrics, name: str) -> float | None:
    return metrics.registry.get_sample_value("hermes_node_projection_lag", {"projection": name})


def test_a_locked_database_defers_the_projection_and_the_next_tick_catches_up(
    store: SqlEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: another process holds the write lock
    metrics = NodeMetrics()
    pump = ProjectionPump(store, [f"{_MODULE}:Ended"], 60.0, metrics)
    database = store.engine.url.database
    assert database is not None
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    caplog.set_level(logging.WARNING, logger="tenant_node.ingest.runtime")

    # Execute
    try:
        pump.catch_up()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    deferred = [r for r in caplog.records if "projection_deferred" in r.getMessage()]
    pump.catch_up()

    # Assert: one warning without a traceback, then caught up to the head
    assert len(deferred) == 1
    assert deferred[0].levelno == logging.WARNING and deferred[0].exc_info is None
    assert "database is locked" in deferred[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert _lag(metrics, Ended.name) == 0
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pump_ended")).scalar() == 5


def test_a_failing_projection_is_an_error_and_the_others_still_run(
    store: SqlEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    metrics = NodeMetrics()
    pump = ProjectionPump(store, [f"{_MODULE}:Broken", f"{_MODULE}:Ended"], 60.0, metrics)
    caplog.set_level(logging.WARNING, logger="tenant_node.ingest.runtime")

    # Execute
    pump.catch_up()

    # Assert
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "projection_failed" in errors[0].getMessage()
    assert errors[0].exc_info is not None
    assert _lag(metrics, Ended.name) == 0
    assert _lag(metrics, Broken.name) is None  # never measured: it never caught up
