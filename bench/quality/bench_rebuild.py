"""Quality read model: rebuild throughput and incremental latency (issue 4). Prints JSON.

Two measurements, both written to stdout as one JSON object:

1. ``fold``: rebuilding the scores of ``--events`` session events from scratch. The events
   are built in memory as ``StoredEvent`` records (no store decode), folded by
   ``fold_in_memory`` (what ``rebuild_quality`` runs) and written with ``MemoryRows.flush``
   into a fresh SQLite file. The flush holds the work deferred to it: one scoring per
   trajectory, preference pairs, the MinHash signatures, the bulk inserts and the commit.
   Reported for ``fold``, ``flush`` and ``fold_and_flush``: seconds and events/s, wall and
   per CPU second of this process (the machine may be shared: the CPU rate is what one
   free core would do; the load average is recorded at start, after the fold and at the
   end). ``event_by_event_sql`` is the baseline measured in the same process: the
   ``QualityProjection`` handlers event by event through SQL on a prefix
   (``--runner-events``) of the same events. With ``--pg-url`` the same rows (folded a
   second time, untimed) are also flushed into a scratch PostgreSQL schema:
   ``flush_postgresql``.
2. ``store``: a real SQLite tenant log of ``--store-events`` events (with a key ring, so
   personal fields are decrypted on read): ``read_decode`` (reading every event, no
   fold), ``rebuild_quality`` end to end (read + decode of the quality event types + fold +
   flush; events/s of the whole log) and the incremental
   latency of one new event (append, then ``ProjectionRunner.catch_up``), p50/p95 over
   ``--trials`` events.

    .venv/bin/python bench/quality/bench_rebuild.py --events 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hermes_fed.events import NewEvent, StoredEvent
from hermes_fed.projections import ProjectionRunner
from hermes_fed.quality import read_model as rm
from hermes_fed.quality.config import QualityConfig
from hermes_fed.quality.projection import (
    QualityProjection,
    fold_in_memory,
    rebuild_quality,
)
from hermes_fed.quality.rows import MemoryRows
from hermes_fed.store import Keyring, open_store

TASK_TYPES = ("arithmetic", "lookup", "weather", "unit_conversion", "summarise")
FEEDBACK = ("OutputAccepted", "RetryRequested", "OutputEdited", "SessionContinued",
            "ErrorReported")


def session_events(rng: random.Random, session: int) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """One session: start, 1-2 trajectories, 1-3 feedback events each, an end."""
    stream = f"session-{session}"
    yield stream, "SessionStarted", {"user_ref": f"u-{session % 997}", "model_version": "m1",
                                     "variant": None, "ab_test_id": None}
    for k in range(rng.choice((1, 1, 2))):
        tid = f"t-{session}-{k}"
        a, b = rng.randrange(1000), rng.randrange(1000)
        task = f"What is {a}+{b}? Please show the tool call."
        final = f"{a}+{b} = {a + b}"
        yield stream, "TrajectoryRecorded", {
            "trajectory_id": tid, "task": task, "task_type": rng.choice(TASK_TYPES),
            "messages": [{"role": "user", "content": task},
                         {"role": "assistant", "content": final}],
            "tools": [], "final_response": final}
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(FEEDBACK)
            data: dict[str, Any] = {"trajectory_id": tid}
            if kind == "OutputEdited":
                data["edit_ratio"] = rng.random()
            if kind == "ErrorReported":
                data["reason"] = ""
            yield stream, kind, data
    yield stream, "SessionEnded", {"reason": ""}


def synthetic_events(n: int, seed: int, chunk: int = 100_000) -> Iterator[list[StoredEvent]]:
    """``n`` stored-event records in lists of ``chunk`` (bounded memory for 1M events)."""
    rng = random.Random(seed)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    out: list[StoredEvent] = []
    versions: dict[str, int] = {}
    session = made = 0
    while made < n:
        for stream, kind, data in session_events(rng, session):
            if made >= n:
                break
            versions[stream] = versions.get(stream, 0) + 1
            made += 1
            moment = base + timedelta(seconds=made)
            out.append(StoredEvent(
                position=made, event_id=uuid.uuid4(), tenant_id="bench",
                stream_id=stream, stream_version=versions[stream], type=kind,
                schema_version=1, occurred_at=moment, recorded_at=moment, data=data,
                metadata={}, prev_hash=b"", hash=b""))
            if len(out) == chunk:
                yield out
                out = []
        session += 1
    if out:
        yield out


def rates(events: int, wall: float, cpu: float) -> dict[str, float]:
    """Seconds and events/s, wall and per CPU second of this process."""
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "events_per_s": round(events / wall) if wall else 0,
            "events_per_cpu_s": round(events / cpu) if cpu else 0}


def flush_postgresql(rows: MemoryRows, url: str) -> tuple[float, float]:
    """Flush ``rows`` into a fresh schema of the PostgreSQL database at ``url`` (dropped
    afterwards); returns (wall, CPU) seconds of this process."""
    schema = f"bench_quality_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        scoped = engine.execution_options(schema_translate_map={None: schema})
        rm.metadata.create_all(scoped)
        t0, c0 = time.perf_counter(), time.process_time()
        with scoped.begin() as conn:
            rows.flush(conn)
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


def bench_fold(n: int, runner_n: int, seed: int, workdir: str,
               pg_url: str | None = None) -> dict[str, Any]:
    config = QualityConfig()
    rows = MemoryRows(config.selection)
    pg_rows = MemoryRows(config.selection) if pg_url else None  # a flush consumes its rows
    count = 0
    fold_s = fold_cpu = build_s = 0.0
    prefix: list[StoredEvent] = []
    t_build = time.perf_counter()
    for chunk in synthetic_events(n, seed):
        build_s += time.perf_counter() - t_build
        if not prefix:
            prefix = chunk[:runner_n]
        t0, c0 = time.perf_counter(), time.process_time()
        fold_in_memory(chunk, config, rows)  # what rebuild_quality runs, chunk by chunk
        fold_s += time.perf_counter() - t0
        fold_cpu += time.process_time() - c0
        if pg_rows is not None:
            fold_in_memory(chunk, config, pg_rows)
        count += len(chunk)
        t_build = time.perf_counter()
    load_mid = os.getloadavg()[0]
    engine = sa.create_engine(f"sqlite:///{workdir}/fold.db")
    rm.metadata.create_all(engine)
    t0, c0 = time.perf_counter(), time.process_time()
    with engine.begin() as conn:
        rows.flush(conn)  # scores, pairs, MinHash signatures, bulk inserts, commit
    flush_s, flush_cpu = time.perf_counter() - t0, time.process_time() - c0
    with engine.connect() as conn:
        scored = conn.execute(sa.select(sa.func.count()).where(
            rm.trajectories.c.combined_score.is_not(None))).scalar_one()
    engine.dispose()

    # Baseline: the event-by-event handlers through SQL, on a prefix of the same events.
    engine = sa.create_engine(f"sqlite:///{workdir}/runner.db")
    rm.metadata.create_all(engine)
    projection = QualityProjection(config)
    t0, c0 = time.perf_counter(), time.process_time()
    with engine.begin() as conn:
        for event in prefix:
            projection.handle(conn, event)
    runner_s, runner_cpu = time.perf_counter() - t0, time.process_time() - c0
    engine.dispose()
    total = rates(count, fold_s + flush_s, fold_cpu + flush_cpu)
    baseline = rates(len(prefix), runner_s, runner_cpu)
    return {
        "events": count, "trajectories_scored": scored, "build_events_s": round(build_s, 3),
        "fold": rates(count, fold_s, fold_cpu),
        "flush": rates(count, flush_s, flush_cpu),
        "fold_and_flush": total,
        "event_by_event_sql": {"events": len(prefix), **baseline},
        "speedup_vs_event_by_event_cpu": round(
            total["events_per_cpu_s"] / baseline["events_per_cpu_s"], 1),
        "load_average_after_fold": load_mid,
        **({"flush_postgresql": rates(count, *flush_postgresql(pg_rows, pg_url))}
           if pg_rows is not None and pg_url else {}),
    }


def bench_store(n: int, trials: int, seed: int, workdir: str) -> dict[str, Any]:
    keyring = Keyring.generate("bench")
    store = open_store(f"sqlite:///{workdir}/tenant.db", "bench", keyring=keyring,
                       synchronous="NORMAL")
    rng = random.Random(seed)
    batch: list[NewEvent] = []
    session = appended = 0
    t0 = time.perf_counter()
    while appended < n:
        for stream, kind, data in session_events(rng, session):
            user = f"u-{session % 997}"
            batch.append(NewEvent(stream_id=stream, type=kind, data=data, subject=user))
        session += 1
        if len(batch) >= 500 or appended + len(batch) >= n:
            store.append(batch)
            appended += len(batch)
            batch = []
    append_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    read = sum(1 for _ in store.read())
    read_s, read_cpu = time.perf_counter() - t0, time.process_time() - c0
    log_events = store.head()
    t0, c0 = time.perf_counter(), time.process_time()
    folded = rebuild_quality(store)
    rebuild_s, rebuild_cpu = time.perf_counter() - t0, time.process_time() - c0
    runner = ProjectionRunner(store, QualityProjection())
    latencies: dict[str, list[float]] = {"feedback": [], "trajectory": []}
    for i in range(trials):
        events = list(session_events(rng, session + i))
        recorded = next(e for e in events if e[1] == "TrajectoryRecorded")
        feedback = next(e for e in events if e[1] in FEEDBACK)
        for label, (stream, kind, data) in (("trajectory", recorded), ("feedback", feedback)):
            store.append([NewEvent(stream_id=stream, type=kind, data=data,
                                   subject=f"u-{i}")])
            t0 = time.perf_counter()
            runner.catch_up()
            latencies[label].append(time.perf_counter() - t0)
    store.close()

    def summary(values: list[float]) -> dict[str, float]:
        values = sorted(values)
        return {"p50_ms": round(statistics.median(values) * 1e3, 3),
                "p95_ms": round(values[int(0.95 * (len(values) - 1))] * 1e3, 3)}

    return {
        "events": log_events, "append_events_per_s": round(appended / append_s),
        "read_decode": rates(read, read_s, read_cpu),
        # Events/s of the log rebuilt; only the quality types (events_folded) are read.
        "rebuild_quality": {**rates(log_events, rebuild_s, rebuild_cpu),
                            "events_folded": folded},
        "incremental_catch_up": {k: summary(v) for k, v in latencies.items()},
        "trials": trials,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runner-events", type=int, default=20_000)
    parser.add_argument("--store-events", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pg-url", default=None,
                        help="also time the flush into PostgreSQL (a scratch schema), e.g. "
                             "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        result = {
            "bench": "quality_rebuild",
            "load_average_at_start": os.getloadavg()[0],
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "fold": bench_fold(args.events, args.runner_events, args.seed, workdir,
                               args.pg_url),
            "store": bench_store(args.store_events, args.trials, args.seed, workdir),
            "load_average_at_end": os.getloadavg()[0],
        }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
