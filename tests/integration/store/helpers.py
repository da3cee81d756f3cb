"""Shared pieces of the event-store conformance suite: events, raw SQL as an attacker with
database rights would run it, and a probe of what the log holds."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from hermes_fed.events import NewEvent
from hermes_fed.store import SqlEventStore
from hermes_fed.store import schema_ddl as ddl
from hermes_fed.store.memory import MemoryBackend, MemoryLog

MakeStore = Callable[..., SqlEventStore]


def accepted(stream: str, n: int = 1, **meta: Any) -> list[NewEvent]:
    """``n`` small ``OutputAccepted`` events on ``stream``."""
    return [
        NewEvent(stream_id=stream, type="OutputAccepted", data={"trajectory_id": f"t-{i}"}, metadata=meta)
        for i in range(n)
    ]


def trajectory(stream: str, task: str = "add two numbers", user: str | None = None) -> NewEvent:
    return NewEvent(
        stream_id=stream,
        type="TrajectoryRecorded",
        data={
            "trajectory_id": f"t-{uuid.uuid4().hex[:8]}",
            "task": task,
            "task_type": "arithmetic",
            "messages": [{"role": "user", "content": task}, {"role": "assistant", "content": "5"}],
            "tools": [],
            "final_response": "5",
        },
        subject=user,
    )


def session_started(stream: str, user: str) -> NewEvent:
    return NewEvent(
        stream_id=stream, type="SessionStarted", data={"user_ref": user, "model_version": "m-1"}, subject=user
    )


def raw(store: SqlEventStore, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """Run SQL on the store's own database (PostgreSQL: in the test schema), committed.

    On the memory backend the statement runs on a SQLite copy of the log's tables (same
    DDL, no triggers), and what it changed is loaded back into the log: what an attacker
    holding the process's memory could do to the rows."""
    if isinstance(store.backend, MemoryBackend):
        return _raw_on_memory(store.backend.log, sql, params or {})
    with store.engine.begin() as conn:
        result = conn.execute(sa.text(sql), params or {})
        return [tuple(r) for r in result.all()] if result.returns_rows else []


def _raw_on_memory(log: MemoryLog, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    engine = sa.create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            ddl.metadata.create_all(conn)
            tables = log.tables()
            for table in ddl.metadata.sorted_tables:
                if tables[table.name]:
                    names = [c.name for c in table.columns]
                    conn.execute(
                        table.insert(), [dict(zip(names, row, strict=True)) for row in tables[table.name]]
                    )
            result = conn.execute(sa.text(sql), params)
            rows = [tuple(r) for r in result.all()] if result.returns_rows else []
            changed = {
                t.name: [tuple(r) for r in conn.execute(t.select())] for t in ddl.metadata.sorted_tables
            }
        if changed != tables:
            log.load(changed)
        return rows
    finally:
        engine.dispose()


def drop_guards(store: SqlEventStore) -> None:
    """Remove the append-only triggers, as an attacker with DDL rights would (the memory
    log has none: its rows are changed through ``raw`` directly)."""
    if store.dialect == "memory":
        return
    if store.dialect == "sqlite":
        raw(store, "DROP TRIGGER events_no_update")
        raw(store, "DROP TRIGGER events_no_delete")
    else:
        raw(store, "ALTER TABLE events DISABLE TRIGGER USER")


def row_count(store: SqlEventStore) -> int:
    return int(raw(store, "SELECT COUNT(*) FROM events")[0][0])


def snapshot(store: SqlEventStore) -> list[tuple[Any, ...]]:
    """Every stored column of every row plus the subject keys (to prove nothing changed)."""
    events = raw(store, "SELECT * FROM events ORDER BY position")
    keys = raw(store, "SELECT * FROM subject_keys ORDER BY subject_id, key_ref")
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in events + keys]
