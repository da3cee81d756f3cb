"""End-to-end ingest over gRPC with redaction on: trajectories/s, events/s, AppendEvents p50/p99.

Starts ``hermes-fed node serve`` (SQLite, default redaction) as a subprocess on 127.0.0.1,
then drives it with 1 and with 8 concurrent client *processes* (so the clients' own Python
does not share the server's GIL). Each AppendEvents call carries ``--sessions-per-batch``
sessions of 5 events (SessionStarted, TrajectoryRecorded with PII in it, OutputAccepted,
SessionContinued, SessionEnded). The baseline is the same workload appended in-process
straight to a store behind the same redaction gate (no gRPC), so ``ratio_vs_in_process``
shows what the network layer costs.

    .venv/bin/python bench/ingest/bench_ingest.py --seconds 15 --out bench/results/ingest.json

Prints one JSON document; never asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

EVENTS_PER_SESSION = 5


def session_events(worker: int, i: int) -> list[Any]:
    from hermes_fed.events import NewEvent

    stream, user, tid = f"session-b{worker}-{i}", f"user-{worker}-{i % 50}", f"t-{worker}-{i}"
    text = (f"Please email the invoice to customer{i}@example.com and call +1 415 555 "
            f"{1000 + i % 9000:04d}; the order id is ORD-{i} and the total is {i % 500}.50 USD.")
    trajectory = {
        "trajectory_id": tid, "task": text, "task_type": "support",
        "messages": [
            {"role": "system", "content": "You are a support agent with tools."},
            {"role": "user", "content": text},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "name": "lookup_order", "arguments": {"order_id": f"ORD-{i}",
                                                                     "email": f"customer{i}@example.com"}}]},
            {"role": "tool", "tool_call_id": "c1", "name": "lookup_order",
             "content": json.dumps({"status": "shipped", "eta_days": 2, "carrier": "UPS"})},
            {"role": "assistant", "content": "Your order has shipped and arrives in 2 days; "
                                             "I emailed the invoice."},
        ],
        "tools": [{"name": "lookup_order", "description": "find an order",
                   "parameters": {"type": "object"}}],
        "final_response": "Your order has shipped and arrives in 2 days; I emailed the invoice.",
    }
    return [
        NewEvent(stream_id=stream, type="SessionStarted",
                 data={"user_ref": user, "model_version": "base-v1"}, subject=user),
        NewEvent(stream_id=stream, type="TrajectoryRecorded", data=trajectory, subject=user),
        NewEvent(stream_id=stream, type="OutputAccepted", data={"trajectory_id": tid}),
        NewEvent(stream_id=stream, type="SessionContinued", data={"trajectory_id": tid}),
        NewEvent(stream_id=stream, type="SessionEnded", data={}),
    ]


def client_worker(target: str, token: str, worker: int, seconds: float, per_batch: int,
                  start_at: float, out: Any) -> None:
    from hermes_fed.client import IngestClient, RetryPolicy

    client = IngestClient(target, tenant_id="bench", token=token,
                          retry=RetryPolicy(timeout_s=60.0))
    latencies: list[float] = []
    sessions = 0
    i = 0
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        batch = [e for k in range(per_batch) for e in session_events(worker, i + k)]
        i += per_batch
        t0 = time.perf_counter()
        client.append(batch)
        latencies.append(time.perf_counter() - t0)
        sessions += per_batch
    client.transport.close()
    out.put({"worker": worker, "sessions": sessions, "latencies": latencies})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def run_clients(target: str, token: str, n: int, seconds: float, per_batch: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 3.0  # let every process finish importing first
    procs = [ctx.Process(target=client_worker,
                         args=(target, token, w + 1000 * n, seconds, per_batch, start_at, queue))
             for w in range(n)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    latencies = [x for r in results for x in r["latencies"]]
    sessions = sum(r["sessions"] for r in results)
    return {
        "clients": n, "seconds": seconds, "calls": len(latencies),
        "trajectories_per_s": sessions / seconds,
        "events_per_s": sessions * EVENTS_PER_SESSION / seconds,
        "append_p50_ms": percentile(latencies, 50) * 1000,
        "append_p99_ms": percentile(latencies, 99) * 1000,
    }


def in_process_baseline(seconds: float, per_batch: int) -> dict[str, Any]:
    """The same batches appended straight to a store behind the same gate (no gRPC)."""
    from tenant_node.config import node_config_from_mapping
    from tenant_node.ingest.runtime import open_node_store

    with tempfile.TemporaryDirectory() as tmp:
        config = node_config_from_mapping({"tenant_id": "bench", "token": "b" * 20,
                                           "data_dir": tmp})
        store = open_node_store(config)
        latencies: list[float] = []
        sessions = i = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            batch = [e for k in range(per_batch) for e in session_events(0, i + k)]
            i += per_batch
            t0 = time.perf_counter()
            store.append(batch)
            latencies.append(time.perf_counter() - t0)
            sessions += per_batch
        store.close()
    return {"trajectories_per_s": sessions / seconds,
            "events_per_s": sessions * EVENTS_PER_SESSION / seconds,
            "append_p50_ms": percentile(latencies, 50) * 1000,
            "append_p99_ms": percentile(latencies, 99) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per configuration")
    parser.add_argument("--sessions-per-batch", type=int, default=4)
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--out", default="", help="also write the JSON here")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "tests"))
    from integration.ingest_node import NodeProcess

    token = "bench-token-0123456789"
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeProcess(Path(tmp) / "node", f"sqlite:///{Path(tmp) / 'bench.db'}",
                           tenant_id="bench", token=token, max_batch_events=1000,
                           max_event_bytes=262144, workers=8)
        node.start()
        try:
            runs = [run_clients(node.target, token, int(n), args.seconds,
                                args.sessions_per_batch) for n in args.clients.split(",")]
        finally:
            node.stop()
    baseline = in_process_baseline(args.seconds, args.sessions_per_batch)
    for run in runs:
        run["ratio_vs_in_process"] = run["events_per_s"] / baseline["events_per_s"]
    result = {
        "benchmark": "ingest_grpc_end_to_end",
        "store": "sqlite (WAL, synchronous=FULL), encryption + per-subject keys",
        "redaction": "default RedactionConfig (no NER model)",
        "events_per_session": EVENTS_PER_SESSION,
        "sessions_per_batch": args.sessions_per_batch,
        "runs": runs,
        "baseline_in_process_1_thread": baseline,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
