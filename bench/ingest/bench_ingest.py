"""End-to-end ingest over gRPC with redaction on: trajectories/s, events/s, AppendEvents p50/p99,
against the redaction-only ceiling measured in the same run.

Starts ``hermes-fed node serve`` (SQLite, WAL, ``synchronous=FULL``, default redaction and
group commit; ``--group-commit both`` runs a node without it first, as the same run's
baseline) as a subprocess on 127.0.0.1, then drives it with 1 and with 8 concurrent client *processes*
(so the clients' own Python does not share the server's GIL). Each AppendEvents call
carries ``--sessions-per-batch`` sessions of 5 events (SessionStarted, TrajectoryRecorded
with PII in it, OutputAccepted, SessionContinued, SessionEnded).

In the same process, on the same batches (one thread each, fresh sessions every batch):

* ``redaction_ceiling``: ``Redactor.redact_new_events`` with the in-memory placeholder
  index, nothing else: the most a node could ingest if everything but redaction were free;
* ``node_gate``: the gate exactly as ``node serve`` builds it (``open_node_store``, default
  config: durable placeholder index, staged per batch);
* ``append_node`` / ``append_in_memory_index``: ``store.append`` through
  ``open_node_store``, and the same store with the in-memory-index redactor as its gate
  (what the durable index costs on the whole write path, fsync included).

One round of the four (``--in-process-seconds`` each) runs before the first gRPC run and
after each (the node idle), so a shared machine's load swings reach both sides of a ratio
alike; the median round is reported, and ``ratios`` divides the medians:
``node_gate_vs_in_memory_redactor`` and ``grpc_<n>_clients_vs_redaction_ceiling``.

    .venv/bin/python bench/ingest/bench_ingest.py --seconds 15 --out bench/results/ingest.json

``cpu_*`` ratios divide trajectories per CPU second instead (the in-process thread's CPU
time; the node process's, all threads, from /proc): what a shared machine's load moves
least. Prints one JSON document; never asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
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


def run_clients(target: str, token: str, n: int, seconds: float, per_batch: int,
                server_pid: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 3.0  # let every process finish importing first
    procs = [ctx.Process(target=client_worker,
                         args=(target, token, w + 1000 * n, seconds, per_batch, start_at, queue))
             for w in range(n)]
    for p in procs:
        p.start()
    while time.time() < start_at:
        time.sleep(0.001)
    cpu0 = _process_cpu_s(server_pid)
    results = [queue.get(timeout=seconds + 300) for _ in procs]
    server_cpu = _process_cpu_s(server_pid) - cpu0
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
        "server_cpu_s": server_cpu,
        "trajectories_per_server_cpu_s": sessions / max(server_cpu, 1e-9),
    }


def _batches(worker: int, n: int, per_batch: int) -> list[list[Any]]:
    return [[e for k in range(per_batch) for e in session_events(worker, i + k)]
            for i in range(0, n * per_batch, per_batch)]


def _rate(run: Any, batches: list[list[Any]], seconds: float) -> tuple[float, float]:
    """Sessions per wall second and per CPU second of ``run`` over ``batches`` until
    ``seconds`` have passed (CPU: this thread's, which a loaded machine hardly moves)."""
    sessions = 0
    t0, c0 = time.perf_counter(), time.thread_time()
    for batch in batches:
        run(batch)
        sessions += len(batch) // EVENTS_PER_SESSION
        if time.perf_counter() - t0 >= seconds:
            break
    return sessions / (time.perf_counter() - t0), sessions / max(time.thread_time() - c0, 1e-9)


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_process(seconds: float, per_batch: int, rounds: int,
               first_worker: int) -> dict[str, list[tuple[float, float]]]:
    """The redaction ceiling, the node's gate and the two appends, in alternating rounds."""
    from hermes_fed.privacy import RedactionConfig, Redactor
    from tenant_node.config import node_config_from_mapping
    from tenant_node.ingest.runtime import open_node_store

    budget = max(1, int(seconds * 2000 / per_batch))  # more batches than a round can use
    runs: dict[str, list[tuple[float, float]]] = {"redaction_ceiling": [], "node_gate": [], "append_node": [],
                                    "append_in_memory_index": []}
    with tempfile.TemporaryDirectory() as tmp:
        config = node_config_from_mapping({"tenant_id": "bench", "token": "b" * 20,
                                           "data_dir": tmp})
        node = open_node_store(config)
        node_gate = node.gate
        assert node.keyring is not None
        redactor = Redactor(RedactionConfig.from_mapping(config.redaction),
                            node.keyring.hmac_secret)
        worker = first_worker
        for _ in range(rounds):
            for name in runs:
                worker += 1
                batches = _batches(worker, budget, per_batch)
                if name == "redaction_ceiling":
                    rate = _rate(redactor.redact_new_events, batches, seconds)
                elif name == "node_gate":
                    assert node_gate is not None
                    rate = _rate(node_gate, batches, seconds)
                elif name == "append_node":
                    node.gate = node_gate
                    rate = _rate(node.append, batches, seconds)
                else:
                    node.gate = redactor.redact_new_events
                    rate = _rate(node.append, batches, seconds)
                runs[name].append(rate)
        node.gate = node_gate
        node.close()
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per configuration")
    parser.add_argument("--sessions-per-batch", type=int, default=4)
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--in-process-seconds", type=float, default=4.0, help="per round")
    parser.add_argument("--out", default="", help="also write the JSON here")
    parser.add_argument("--group-commit", choices=("on", "off", "both"), default="on",
                        help="the node's group_commit setting; both: a node with it off, then "
                             "one with it on, in the same run (default on, the node's default)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "tests"))
    from integration.ingest_node import NodeProcess

    token = "bench-token-0123456789"
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.group_commit]
    rounds = [in_process(args.in_process_seconds, args.sessions_per_batch, 1, 10_000)]
    runs = []
    k = 0
    for group_commit in modes:
        with tempfile.TemporaryDirectory() as tmp:
            node = NodeProcess(Path(tmp) / "node", f"sqlite:///{Path(tmp) / 'bench.db'}",
                               tenant_id="bench", token=token, max_batch_events=1000,
                               max_event_bytes=262144, workers=8, group_commit=group_commit)
            node.start()
            try:
                for n in args.clients.split(","):
                    assert node.process is not None
                    run = run_clients(node.target, token, int(n), args.seconds,
                                      args.sessions_per_batch, node.process.pid)
                    runs.append({**run, "group_commit": group_commit})
                    k += 1
                    rounds.append(in_process(args.in_process_seconds, args.sessions_per_batch,
                                             1, 20_000 * k))
            finally:
                node.stop()
    local = {name: {"trajectories_per_s": statistics.median(r[0] for one in rounds for r in one[name]),
                    "trajectories_per_cpu_s": statistics.median(r[1] for one in rounds for r in one[name]),
                    "rounds": [round(r[0], 1) for one in rounds for r in one[name]],
                    "rounds_per_cpu_s": [round(r[1], 1) for one in rounds for r in one[name]]}
             for name in rounds[0]}
    ceiling = local["redaction_ceiling"]["trajectories_per_s"]
    ratios = {
        "node_gate_vs_in_memory_redactor":
            local["node_gate"]["trajectories_per_s"] / ceiling,
        "append_node_vs_append_in_memory_index":
            local["append_node"]["trajectories_per_s"]
            / local["append_in_memory_index"]["trajectories_per_s"],
    }
    cpu_ceiling = local["redaction_ceiling"]["trajectories_per_cpu_s"]
    ratios["cpu_node_gate_vs_in_memory_redactor"] = \
        local["node_gate"]["trajectories_per_cpu_s"] / cpu_ceiling
    for run in runs:
        name = f"grpc_{run['clients']}_clients" + ("" if run["group_commit"] else "_no_group_commit")
        ratios[f"{name}_vs_redaction_ceiling"] = run["trajectories_per_s"] / ceiling
        ratios[f"cpu_{name}_server_vs_redaction_ceiling"] = \
            run["trajectories_per_server_cpu_s"] / cpu_ceiling
    result = {
        "benchmark": "ingest_grpc_end_to_end",
        "command": "python bench/ingest/bench_ingest.py " + " ".join(sys.argv[1:]),
        "store": "sqlite (WAL, synchronous=FULL), encryption + per-subject keys",
        "redaction": "default RedactionConfig (no NER model)",
        "events_per_session": EVENTS_PER_SESSION,
        "sessions_per_batch": args.sessions_per_batch,
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "runs": runs,
        "in_process_1_thread": local,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1m_after": round(os.getloadavg()[0], 2),
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
