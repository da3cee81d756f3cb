"""A capture's commit with SQLite's own WAL checkpoints against the gateway's checkpoint thread.

Two node logs side by side in one process, the same captures into both through the
gateway's :class:`~tenant_node.gateway.capture.CaptureWriter` (redaction, append, commit,
one at a time as a lone caller's would be; with ``--threads N``, N at once, as N
concurrent calls' would be, sharing group commits), alternating which goes first:

* ``autocheckpoint``: the store as every other process opens it; the commit that takes the
  WAL past 1,000 pages copies it into the database before it returns;
* ``checkpointer``: the store as the gateway opens it (``autocheckpoint=False``) with a
  :class:`~hermes_fed.store.wal_checkpoint.WalCheckpointer` beside the writer.

    .venv/bin/python -m bench.gateway.bench_checkpoint --captures 3000
    .venv/bin/python -m bench.gateway.bench_checkpoint --synchronous NORMAL
    .venv/bin/python -m bench.gateway.bench_checkpoint --captures 500 --threads 8

Prints one JSON document (per-capture latency quantiles, checkpoints, the WAL's size at
the end); asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.gateway.bench_gateway import SYSTEM, user_text  # noqa: E402
from tests.integration.gateway.stack import Node  # noqa: E402


def _contender(workdir: Path, name: str, synchronous: str, background: bool) -> dict[str, Any]:
    from tenant_node.config import load_node_config
    from tenant_node.gateway.capture import CaptureWriter
    from tenant_node.gateway.metrics import GatewayMetrics
    from tenant_node.ingest.runtime import open_node_store

    node = Node(workdir / name, "http://127.0.0.1:9", top={"sqlite_synchronous": synchronous})
    store = open_node_store(load_node_config(node.config_path), autocheckpoint=not background)
    db = Path(store.engine.url.database or "")
    metrics = GatewayMetrics()
    writer = CaptureWriter(store, metrics, checkpoint_db=str(db) if background else None,
                           synchronous=synchronous)
    writer.start()
    return {"store": store, "writer": writer, "db": db, "metrics": metrics, "samples": []}


def _samples(metrics: Any) -> dict[str, float]:
    return {s.name: s.value for m in metrics.registry.collect()
            if m.name == "hermes_gateway_wal_checkpoint_seconds" for s in m.samples}


def _count(metrics: Any) -> int:
    return int(_samples(metrics).get("hermes_gateway_wal_checkpoint_seconds_count", 0))


def _mean_ms(metrics: Any) -> float | None:
    samples = _samples(metrics)
    count = samples.get("hermes_gateway_wal_checkpoint_seconds_count", 0)
    return samples["hermes_gateway_wal_checkpoint_seconds_sum"] / count * 1e3 if count else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from hermes_fed.serving.assembly import SessionState, TurnDigester
    from hermes_fed.serving.capture import CallContext, call_events

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captures", type=int, default=3000,
                        help="rounds into each (3000); a round is --threads captures")
    parser.add_argument("--threads", type=int, default=1,
                        help="captures submitted at once in a round, as concurrent calls (1)")
    parser.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"),
                        help="the logs' sqlite_synchronous (FULL)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads: at least 1")
    if args.captures * args.threads < 100:
        parser.error("--captures x --threads: at least 100 (a checkpoint comes every ~80)")

    workdir = Path(tempfile.mkdtemp(prefix="bench-checkpoint-"))
    contenders = {name: _contender(workdir, name, args.synchronous, background)
                  for name, background in (("autocheckpoint", False), ("checkpointer", True))}
    digester = TurnDigester(b"b" * 32)
    # As the gateway does once it has started: what start-up allocated (the recognizers,
    # presidio) is left out of the collector's full passes, ~0.2 s each here, which
    # otherwise land on whichever capture is under way (the same one in every run).
    gc.collect()
    gc.freeze()
    try:
        for i in range(args.captures):
            calls = []  # (n, turns, answer, chains): the same calls into both logs
            for n in range(i * args.threads, (i + 1) * args.threads):
                turns = [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": user_text(n, 0)}]
                answer = {"role": "assistant", "content": f"echo: {user_text(n, 0)}"}
                calls.append((n, turns, answer, digester.chain([*turns, answer])))
            names = list(contenders) if i % 2 == 0 else list(reversed(contenders))
            for name in names:
                batch = []
                for n, turns, answer, chains in calls:
                    state = SessionState(f"session-{n:032x}")
                    reservation = state.reserve(chains[:-1], "user", time.time(), 60.0)
                    context = CallContext(state.stream_id, f"bench-user-{n}", "base", None,
                                          None, "chat")
                    batch.append(call_events(context, reservation, turns, answer, [], chains,
                                             0, None))
                samples = contenders[name]["samples"]
                started = time.perf_counter()
                futures = [contenders[name]["writer"].submit(events) for events in batch]
                for future in futures:  # each capture's time: from submit to its commit
                    future.add_done_callback(
                        lambda _f, t0=started, out=samples: out.append(time.perf_counter() - t0))
                for future in futures:
                    future.result()
        out: dict[str, Any] = {}
        for name, c in contenders.items():
            c["writer"].stop()
            ms = np.asarray(c["samples"]) * 1e3
            wal = Path(f"{c['db']}-wal")
            out[name] = {
                "capture_p50_ms": float(np.percentile(ms, 50)),
                "capture_p90_ms": float(np.percentile(ms, 90)),
                "capture_p99_ms": float(np.percentile(ms, 99)),
                "capture_max_ms": float(ms.max()),
                "capture_mean_ms": float(ms.mean()),
                "capture_slowest_ms": [round(float(v), 1) for v in np.sort(ms)[-5:]],
                "wal_bytes_at_end": wal.stat().st_size if wal.exists() else 0,
                "background_checkpoints": _count(c["metrics"]),
                "background_checkpoint_mean_ms": _mean_ms(c["metrics"]),
            }
            c["store"].close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"bench": "gateway/bench_checkpoint",
              "config": {"captures": args.captures, "threads": args.threads,
                         "synchronous": args.synchronous},
              "contenders": out}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
