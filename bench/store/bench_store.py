"""Event-store throughput: hermes-fed vs the ``eventsourcing`` library, side by side.

Workload: ~1 KB ``TrajectoryRecorded`` events, 10 per session stream, each with a subject
(user_ref), so hermes-fed does everything it does in production: schema validation, per-
subject encryption of the personal fields, tenant-key AES-GCM over the data, the SHA-256
chain, commit-order positions. The ``eventsourcing`` recorders (ApplicationRecorder: global
notification order, like our positions) store the same canonical-JSON bytes in clear, with
no hashing; their replay includes ``orjson.loads`` of each state, so both sides hand back
decoded events.

Measured, on SQLite (WAL, synchronous=FULL on both) and PostgreSQL:
- append batched (``--batch`` events per transaction) and one by one;
- replay: read the batched log from position 0 to the end;
- projection rebuild (a counting projection) over ``--rebuild-events`` events on SQLite.

JSON to stdout and to ``--out``. Example quick run:
``python -m bench.store.bench_store --events 5000 --single 300 --rebuild-events 20000 --repeats 1``
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from hermes_fed.events import NewEvent, StoredEvent
from hermes_fed.events.codec import canonical_json
from hermes_fed.projections import Handler, Projection, ProjectionRunner, table_rows
from hermes_fed.store import Keyring, SqlEventStore, open_store

PG_URL = os.environ.get("HERMES_FED_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
STREAM_LEN = 10
USERS = 200


# --- workload ----------------------------------------------------------------------------
def trajectory_data(i: int) -> dict[str, Any]:
    """A ~1 KB trajectory (canonical JSON size checked in the report)."""
    return {
        "trajectory_id": f"t-{i:09d}",
        "task": f"What is {i} plus {i * 7 % 1000}? Show the working and explain each step.",
        "task_type": ("arithmetic", "lookup", "summarise")[i % 3],
        "messages": [
            {"role": "system", "content": "You are a careful assistant that uses tools when helpful."},
            {"role": "user", "content": f"What is {i} plus {i * 7 % 1000}? Show the working."},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "call_1", "name": "calculator", "arguments": {"expression": f"{i}+{i * 7 % 1000}"}}
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "name": "calculator",
                "content": json.dumps({"result": i + i * 7 % 1000}),
            },
            {
                "role": "assistant",
                "content": f"{i} + {i * 7 % 1000} = {i + i * 7 % 1000}. I added the units, then the tens, "
                "then the hundreds, carrying where a column exceeded nine.",
            },
        ],
        "tools": [
            {
                "name": "calculator",
                "description": "Evaluate an arithmetic expression.",
                "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
            }
        ],
        "final_response": f"{i} + {i * 7 % 1000} = {i + i * 7 % 1000}.",
    }


def new_events(start: int, n: int, run: str) -> list[NewEvent]:
    return [
        NewEvent(
            stream_id=f"session-{run}-{(start + k) // STREAM_LEN}",
            type="TrajectoryRecorded",
            data=trajectory_data(start + k),
            subject=f"user-{(start + k) // STREAM_LEN % USERS}",
            metadata={"source": "bench"},
        )
        for k in range(n)
    ]


def es_events(start: int, n: int, run: str) -> list[Any]:
    from eventsourcing.persistence import StoredEvent as EsStoredEvent

    out = []
    for k in range(n):
        i = start + k
        stream = uuid.uuid5(uuid.NAMESPACE_URL, f"session-{run}-{i // STREAM_LEN}")
        out.append(
            EsStoredEvent(
                originator_id=stream,
                originator_version=i % STREAM_LEN + 1,
                topic="hermes_fed.events.session:TrajectoryRecorded",
                state=canonical_json(trajectory_data(i)),
            )
        )
    return out


# --- backends ----------------------------------------------------------------------------
class Target:
    """A fresh, empty log on one backend for one library; ``close`` removes it."""

    def __init__(self, backend: str, library: str, workdir: Path) -> None:
        self.backend, self.library = backend, library
        self.name = f"b{secrets.token_hex(4)}"
        self.path = workdir / f"{self.name}.db"
        self.ring = Keyring.generate("bench")
        self.store: SqlEventStore | None = None
        self.recorder: Any = None
        self.datastore: Any = None
        if library == "hermes":
            url = f"sqlite:///{self.path}" if backend == "sqlite" else PG_URL
            self.store = open_store(
                url, "bench", keyring=self.ring, schema=self.name if backend == "postgres" else None
            )
        elif backend == "sqlite":
            from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

            self.datastore = SQLiteDatastore(str(self.path))
            self.recorder = SQLiteApplicationRecorder(self.datastore)
            self.recorder.create_table()
        else:
            from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

            _pg_exec(f'CREATE SCHEMA "{self.name}"')
            self.datastore = PostgresDatastore(
                "test", "127.0.0.1", 5432, "postgres", "", schema=self.name, pool_size=2
            )
            self.recorder = PostgresApplicationRecorder(self.datastore)
            self.recorder.create_table()

    def append(self, start: int, n: int, batch: int, run: str) -> tuple[float, float]:
        """Append events start..start+n in transactions of ``batch``; returns (wall, CPU)
        seconds of this process (CPU time is less sensitive to other load on the host)."""
        elapsed = cpu = 0.0
        for b in range(start, start + n, batch):
            size = min(batch, start + n - b)
            if self.store is not None:
                events = new_events(b, size, run)
                t0, c0 = time.perf_counter(), time.process_time()
                self.store.append(events)
            else:
                es = es_events(b, size, run)
                t0, c0 = time.perf_counter(), time.process_time()
                self.recorder.insert_events(es)
            elapsed += time.perf_counter() - t0
            cpu += time.process_time() - c0
        return elapsed, cpu

    def replay(self, lazy: bool = False) -> tuple[int, float, float]:
        """Read the whole log back. Eager (default): every payload decrypted and parsed,
        like the ``orjson.loads`` on the other side. ``lazy``: envelopes only, payloads
        left to decode on first access (what a projection routing on the type pays for an
        event it has no handler for); the other library has no counterpart."""
        t0, c0 = time.perf_counter(), time.process_time()
        n = 0
        if self.store is not None:
            for _ in self.store.read(lazy=lazy):
                n += 1
        else:
            last = 0
            while True:
                page = self.recorder.select_notifications(last, 2000, inclusive_of_start=False)
                for note in page:
                    orjson.loads(note.state)
                    n += 1
                if len(page) < 2000:
                    break
                last = page[-1].id
        return n, time.perf_counter() - t0, time.process_time() - c0

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        if self.datastore is not None:
            self.datastore.close()
        if self.backend == "postgres":
            _pg_exec(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def sqlite_floor(target: Target, workdir: Path, batch: int) -> tuple[float, float]:
    """SQLite's own share of our batched append: the rows ``target`` wrote (same bytes),
    inserted into an empty log of the same schema, triggers and pragmas by bare ``sqlite3``
    in transactions of ``batch``, with no validation, sealing or hashing: (wall, CPU)."""
    import sqlite3

    assert target.store is not None
    with target.store.engine.connect() as conn:
        rows = [tuple(bytearray(v) if isinstance(v, bytes) else v for v in row)
                for row in conn.exec_driver_sql("SELECT * FROM events ORDER BY position")]
    path = workdir / f"floor-{secrets.token_hex(4)}.db"
    open_store(f"sqlite:///{path}", "bench", keyring=Keyring.generate("bench")).close()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        sql = f"INSERT INTO events VALUES ({','.join('?' * len(rows[0]))})"
        cur = db.cursor()
        t0, c0 = time.perf_counter(), time.process_time()
        for b in range(0, len(rows), batch):
            cur.execute("BEGIN IMMEDIATE")
            cur.executemany(sql, rows[b:b + batch])
            cur.execute("COMMIT")
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def _pg_exec(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(sql)


# --- the counting projection ---------------------------------------------------------------
class CountingProjection(Projection):
    """Events per type and per task type (pure: a function of the log only): one upsert
    per counted key, through the driver (the framework's cost is what is measured)."""

    name = "bench_counts"

    def __init__(self, paramstyle: str) -> None:
        self.metadata = sa.MetaData()
        self.counts = sa.Table(
            "bench_counts",
            self.metadata,
            sa.Column("key", sa.String(100), primary_key=True),
            sa.Column("n", sa.BigInteger, nullable=False),
        )
        p = "?" if paramstyle == "qmark" else "%s"
        self.upsert = (
            f"INSERT INTO bench_counts (key, n) VALUES ({p}, 1) "
            "ON CONFLICT (key) DO UPDATE SET n = bench_counts.n + 1"
        )

    def handlers(self) -> Mapping[str, Handler]:
        return {"TrajectoryRecorded": self._count}

    def _count(self, conn: sa.Connection, e: StoredEvent) -> None:
        conn.exec_driver_sql(self.upsert, (f"task_type:{e.data['task_type']}",))


# --- measurement ---------------------------------------------------------------------------
def summary(rates: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(rates)),
        "min": round(min(rates)),
        "max": round(max(rates)),
        "runs": [round(r) for r in rates],
    }


def measure(args: argparse.Namespace, workdir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Repeats interleave the libraries (hermes, eventsourcing, hermes, ...) so that both
    see the same background load; each repeat's ratio is reported as well as the medians."""
    runs: dict[str, dict[str, list[float]]] = {}
    metrics = ("append_batched", "append_single", "replay")
    for r in range(args.repeats):
        for backend in args.backends:
            for library in args.libraries:
                rec = runs.setdefault(f"{library}/{backend}", {})
                target = Target(backend, library, workdir)
                try:
                    secs, cpu = target.append(0, args.events, args.batch, f"r{r}")
                    rec.setdefault("append_batched", []).append(args.events / secs)
                    rec.setdefault("append_batched_cpu_us", []).append(cpu / args.events * 1e6)
                    n, rsecs, rcpu = target.replay()
                    assert n == args.events, (n, args.events)
                    rec.setdefault("replay", []).append(n / rsecs)
                    rec.setdefault("replay_cpu_us", []).append(rcpu / n * 1e6)
                    if target.store is not None:
                        n, lsecs, _ = target.replay(lazy=True)
                        rec.setdefault("replay_lazy", []).append(n / lsecs)
                    if target.store is not None and backend == "sqlite":
                        fsecs, fcpu = sqlite_floor(target, workdir, args.batch)
                        rec.setdefault("sqlite_floor_append_batched", []).append(args.events / fsecs)
                        rec.setdefault("sqlite_floor_cpu_us", []).append(fcpu / args.events * 1e6)
                finally:
                    target.close()
                target = Target(backend, library, workdir)
                try:
                    secs, cpu = target.append(0, args.single, 1, f"s{r}")
                    rec.setdefault("append_single", []).append(args.single / secs)
                finally:
                    target.close()
                log(
                    f"{library}/{backend} run {r}: "
                    + " ".join(f"{m} {rec[m][-1]:.0f}/s" for m in (*metrics, "replay_lazy") if m in rec)
                    + f" (cpu us/event: append {rec['append_batched_cpu_us'][-1]:.1f}, "
                    f"replay {rec['replay_cpu_us'][-1]:.1f}; load {os.getloadavg()[0]:.1f})"
                )
    results: dict[str, Any] = {}
    for key, rec in runs.items():
        results[key] = {f"{m}_events_per_s": summary(rec[m])
                        for m in (*metrics, "replay_lazy", "sqlite_floor_append_batched") if m in rec}
        for m in ("append_batched_cpu_us", "replay_cpu_us", "sqlite_floor_cpu_us"):
            if m not in rec:
                continue
            results[key][f"{m}_per_event"] = {
                "median": round(statistics.median(rec[m]), 1),
                "runs": [round(x, 1) for x in rec[m]],
            }
    for backend in args.backends:
        ours, theirs = runs.get(f"hermes/{backend}"), runs.get(f"eventsourcing/{backend}")
        if ours and theirs:
            results[f"ratio_per_repeat/{backend}"] = {
                m: [round(a / b, 2) for a, b in zip(ours[m], theirs[m], strict=True)] for m in metrics
            }
    return results


def rebuild(args: argparse.Namespace, workdir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    target = Target("sqlite", "hermes", workdir)
    assert target.store is not None
    try:
        fill, _ = target.append(0, args.rebuild_events, 1000, "rebuild")
        log(f"rebuild: appended {args.rebuild_events} events in {fill:.1f}s")
        projection = CountingProjection(target.store.engine.dialect.paramstyle)
        runner = ProjectionRunner(target.store, projection, batch_size=2000)
        times = []
        for _ in range(args.rebuild_repeats):
            t0 = time.perf_counter()
            n = runner.rebuild()
            times.append(time.perf_counter() - t0)
            assert n == args.rebuild_events
            counted = table_rows(target.store.engine, projection.metadata)["bench_counts"]
            assert sum(int(str(r[1])) for r in counted) == args.rebuild_events, counted
            log(f"rebuild: {n} events in {times[-1]:.1f}s")
        return {
            "events": args.rebuild_events,
            "seconds": {"median": round(statistics.median(times), 2), "runs": [round(t, 2) for t in times]},
            "events_per_s": round(args.rebuild_events / statistics.median(times)),
            "fill_seconds_batch_1000": round(fill, 1),
            "db_bytes": target.path.stat().st_size,
        }
    finally:
        target.close()


def profile_append(args: argparse.Namespace, workdir: Path, backend: str) -> str:
    target = Target(backend, "hermes", workdir)
    try:
        prof = cProfile.Profile()
        prof.enable()
        target.append(0, min(args.events, 20000), args.batch, "prof")
        prof.disable()
    finally:
        target.close()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
    return out.getvalue()


def stages_append(args: argparse.Namespace, workdir: Path, backend: str) -> dict[str, Any]:
    """Our batched append taken apart (see ``bench/store/stages.py``)."""
    from bench.store import stages
    from hermes_fed.store.payload import split_personal

    n = min(args.events, 20000)
    target = Target(backend, "hermes", workdir)
    try:
        assert target.store is not None
        with stages.instrument(target.store) as clock:
            wall, cpu = target.append(0, n, args.batch, "stages")
        personal = target.store.catalog.schema("TrajectoryRecorded").personal
        parts = [split_personal(dict(e.data), personal) for e in new_events(0, n, "c")]
    finally:
        target.close()
    c_wall, c_cpu = stages.c_calls_only(parts)
    return {
        "bench": "store-stages",
        "backend": backend,
        "events": n,
        "batch": args.batch,
        "append": {"wall_us_per_event": round(wall / n * 1e6, 2),
                   "cpu_us_per_event": round(cpu / n * 1e6, 2)},
        "stages_wall_us_per_event": stages.report(clock, n),
        "c_calls_only": {"wall_us_per_event": round(c_wall, 2), "cpu_us_per_event": round(c_cpu, 2)},
        "target_budget_us_per_event": round(1e6 / (50_000 if backend == "sqlite" else 20_000), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000, help="events appended batched per run")
    parser.add_argument("--single", type=int, default=2_000, help="events appended one per transaction")
    parser.add_argument("--batch", type=int, default=100, help="events per transaction (batched)")
    parser.add_argument(
        "--rebuild-events", type=int, default=1_000_000, help="log size for the rebuild (0: skip)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rebuild-repeats", type=int, default=1)
    parser.add_argument("--backends", default="sqlite,postgres", type=lambda s: s.split(","))
    parser.add_argument("--libraries", default="hermes,eventsourcing", type=lambda s: s.split(","))
    parser.add_argument(
        "--profile", choices=["sqlite", "postgres"], help="cProfile our batched append, then exit"
    )
    parser.add_argument(
        "--stages", choices=["sqlite", "postgres"],
        help="time each step of our batched append (JSON to stdout), then exit",
    )
    parser.add_argument("--workdir", default=None, help="where the SQLite files go (default: a temp dir)")
    parser.add_argument("--out", default="bench/results/store.json")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        if args.profile:
            print(profile_append(args, workdir, args.profile))
            return 0
        if args.stages:
            print(json.dumps(stages_append(args, workdir, args.stages), indent=2))
            return 0
        started = time.time()
        results = measure(args, workdir, log)
        rebuilt = rebuild(args, workdir, log) if args.rebuild_events else None

    def ratio(backend: str, metric: str) -> float | None:
        ours, theirs = results.get(f"hermes/{backend}"), results.get(f"eventsourcing/{backend}")
        if not ours or not theirs:
            return None
        return round(ours[metric]["median"] / theirs[metric]["median"], 2)

    sample = canonical_json(trajectory_data(12345))
    report = {
        "bench": "store",
        "command": " ".join(
            ["python -m bench.store.bench_store", *(argv if argv is not None else sys.argv[1:])]
        ),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_at_end": os.getloadavg(),
            "python": platform.python_version(),
        },
        "workload": {
            "event_bytes_canonical_json": len(sample),
            "events": args.events,
            "single": args.single,
            "batch": args.batch,
            "repeats": args.repeats,
            "stream_len": STREAM_LEN,
            "hermes": "validation + per-subject AES-GCM on the personal fields (one blob) + tenant AES-GCM"
            " on the rest + SHA-256 chain; replay decrypts and parses every payload (replay_lazy: on access)",
            "eventsourcing": "ApplicationRecorder, same canonical JSON bytes in clear, no hashing",
            "sqlite_floor": "the rows hermes wrote (same bytes) inserted again into an empty log of "
            "the same schema by bare sqlite3, same batches and pragmas: SQLite's own share",
        },
        "results": results,
        "ratios_hermes_over_eventsourcing": {
            b: {
                m: ratio(b, m)
                for m in ("append_batched_events_per_s", "append_single_events_per_s", "replay_events_per_s")
            }
            for b in args.backends
        },
        "targets": {
            "append_batched_sqlite_min": 50_000,
            "append_batched_postgres_min": 20_000,
            "replay_min": 200_000,
        },
        "rebuild_sqlite": rebuilt,
    }
    text = json.dumps(report, indent=2)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
