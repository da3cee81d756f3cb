"""Invariant 6 through the daemon: SIGKILL during a stream of appends loses nothing
acknowledged, and the chain verifies after a restart (SQLite and PostgreSQL)."""

from __future__ import annotations

import secrets
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hermes_fed.client import IngestError
from hermes_fed.events import NewEvent

from .ingest_node import NodeProcess

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NodeProcess]:
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'acme.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        schema = f"t_{secrets.token_hex(6)}"
    process = NodeProcess(tmp_path / "node", url, schema)
    yield process
    process.stop()
    if schema is not None:
        import psycopg

        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_inv6_sigkill_during_appends_loses_nothing_acknowledged(node: NodeProcess) -> None:
    # Prepare: 4 writers append batches (a trajectory per session) as fast as they can.
    node.start()
    acknowledged: list[uuid.UUID] = []
    lock = threading.Lock()
    failures: list[str] = []

    def writer(w: int) -> None:
        client = node.client(timeout_s=5.0)
        for i in range(10_000):
            stream = f"session-w{w}-{i}"
            batch = [
                NewEvent(stream_id=stream, type="SessionStarted",
                         data={"user_ref": f"user-{w}", "model_version": "m"},
                         subject=f"user-{w}"),
                NewEvent(stream_id=stream, type="TrajectoryRecorded", subject=f"user-{w}", data={
                    "trajectory_id": f"t-{w}-{i}", "task": "call 555-0100 for a refund",
                    "task_type": "support", "final_response": "done",
                    "messages": [{"role": "user", "content": "call me at +1 415 555 0100"},
                                 {"role": "assistant", "content": "done"}], "tools": []}),
                NewEvent(stream_id=stream, type="OutputAccepted",
                         data={"trajectory_id": f"t-{w}-{i}"}),
            ]
            try:
                results = client.append(batch)
            except IngestError as exc:
                failures.append(exc.code)
                return
            with lock:
                acknowledged.extend(r.event_id for r in results)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    while True:  # let a few hundred events through, then pull the plug mid-stream
        threads[0].join(0.05)
        with lock:
            if len(acknowledged) >= 300:
                break

    # Execute
    node.signal(signal.SIGKILL)
    for thread in threads:
        thread.join()
    seen = set(acknowledged)
    node.start()

    # Assert: every acknowledged event is there, and the chain verifies.
    stored = {e.event_id for e in node.client().read_log()}
    assert failures and set(failures) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
    assert seen <= stored, f"{len(seen - stored)} acknowledged events lost"
    with node.open_store() as store:
        report = store.verify()
        assert report.ok, str(report)
        assert report.head == len(stored)
    # Unacknowledged batches were all or nothing: no session has a trajectory alone.
    by_stream: dict[str, int] = {}
    for event in node.client().read_log():
        by_stream[event.stream_id] = by_stream.get(event.stream_id, 0) + 1
    assert set(by_stream.values()) == {3}
