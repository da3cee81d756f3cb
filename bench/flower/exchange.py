"""What a Flower message exchange costs in our local federation: Flower's polling vs ours.

Starts a real :class:`~coordinator.deploy.local_federation.LocalFederation` (one
SuperLink, two SuperNodes on 127.0.0.1, each with a seeded store of tiny-model data, as
the integration tests build it) twice in this process: once with Flower's own polling
(``poll_s=None``: SuperNodes pull every 3 s, SuperExecs ask for tasks every 1 s) and once
with ``poll_s`` (``FAST_POLL_S`` by default; see
:mod:`hermes_fed.federation.supernode_launcher`). In each it runs ``--runs`` times the
hermes-fed app for one ``frozen-a`` round of ``--local-steps`` steps: each run is one
``flwr run`` and two exchanges (train, evaluate) with both nodes. Reported per setting:
the ``flwr run`` wall time, each exchange's wall time as the ServerApp measured it, and
the part of the train exchange not spent in the slowest node's handler (Flower's share),
and the CPU the idle federation burns polling (% of one core); then the ratios
default / fast of the medians.

    .venv/bin/python bench/flower/exchange.py --runs 3 [--isolation subprocess]

``--trace DIR`` keeps every process's log there with ``FLWR_LOG_LEVEL=DEBUG`` (Flower's
timestamps), for reading where the seconds go. Prints JSON; no thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

TENANTS = ("north", "south")


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def _group_cpu_s(pgids: set[int]) -> float:
    """CPU seconds (user + system) so far of every live process in the process groups."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids:  # pgrp; utime and stime are fields 14 and 15 of stat
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _wait_warm(fed: Any, timeout: float = 300.0) -> None:
    """Until every warm ClientApp worker has imported its stack (its start-up is not idle
    polling), then 2 s more for the nodes to settle."""
    deadline = time.monotonic() + timeout
    while not all("warm_up_seconds=" in w.log_since_start() for w in fed.workers.values()):
        if time.monotonic() > deadline:
            raise RuntimeError("the ClientApp workers did not warm up")
        time.sleep(0.2)
    time.sleep(2.0)


def idle_cpu_pct(fed: Any, seconds: float) -> float:
    """CPU the idle federation's processes (all of their process groups) use, in % of one
    core: what polling costs when nothing is asked of the nodes."""
    procs = [fed.superlink, *fed.nodes.values(), *fed.workers.values()]
    pgids = {p.pid for p in procs}  # each is started in its own session (spawn)
    before, started = _group_cpu_s(pgids), time.monotonic()
    time.sleep(seconds)
    return round(100 * (_group_cpu_s(pgids) - before) / (time.monotonic() - started), 1)


def bench_setting(root: Path, model: Path, stores: list[Any], *, poll_s: float | None,
                  isolation: str, runs: int, local_steps: int,
                  idle_s: float) -> dict[str, Any]:
    """``runs`` one-round runs on a fresh federation with ``poll_s``; their timings."""
    from coordinator.deploy.local_federation import LocalFederation, NodeSpec, read_run_report

    coordinator_dir = root / "coordinator"
    rows: list[dict[str, float]] = []
    started = time.monotonic()
    with LocalFederation(root / "federation", isolation=isolation, poll_s=poll_s) as fed:
        for t in stores:
            fed.add_node(NodeSpec(t.tenant, t.store_url, str(model), {"heldout-fraction": 0.4}))
        up_s = time.monotonic() - started
        _wait_warm(fed)
        idle = idle_cpu_pct(fed, idle_s)
        for _ in range(runs):
            outcome = fed.run({"coordinator-dir": str(coordinator_dir), "base-model": str(model),
                               "mode": "frozen-a", "min-nodes": len(stores),
                               "local-steps": local_steps, "ab-looks": 0})
            (report,) = read_run_report(coordinator_dir, outcome.run_id)["rounds"]
            timing = report["timing"]
            rows.append({
                "flwr_run_s": round(outcome.elapsed_s, 3),
                "train_exchange_s": round(timing["train_exchange"], 3),
                "evaluate_exchange_s": round(timing["evaluate_exchange"], 3),
                "node_handler_max_s": round(timing["node_handler_max"], 3),
                "train_flower_share_s": round(
                    max(0.0, timing["train_exchange"] - timing["node_handler_max"]), 3),
            })
            print(json.dumps({"poll_s": poll_s, **rows[-1]}), file=sys.stderr, flush=True)
    return {
        "poll_s": poll_s,
        "federation_start_s": round(up_s, 3),
        "idle_cpu_pct_of_one_core": idle,
        "runs": rows,
        "median": {key: _median([r[key] for r in rows]) for key in rows[0]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--runs", type=int, default=3, help="flwr runs per setting")
    parser.add_argument("--isolation", choices=("process", "subprocess"), default="process",
                        help="process: our warm ClientApp workers (tests, demo); subprocess: "
                             "Flower's default, a flwr-clientapp per message")
    parser.add_argument("--poll-s", type=float, default=None,
                        help="the fast setting's interval; default FAST_POLL_S")
    parser.add_argument("--local-steps", type=int, default=1)
    parser.add_argument("--idle-s", type=float, default=15.0,
                        help="seconds the idle federation's CPU use is measured over")
    parser.add_argument("--trace", type=Path, default=None,
                        help="keep the processes' DEBUG logs (with timestamps) here")
    args = parser.parse_args()

    from coordinator.deploy.local_federation import FAST_POLL_S
    from hermes_fed.training.tiny_model import init_tiny_model
    from tests.integration.federation_data import seed_tenant_store

    fast = FAST_POLL_S if args.poll_s is None else args.poll_s
    if args.trace is not None:
        os.environ["FLWR_LOG_LEVEL"] = "DEBUG"  # the Flower processes inherit it
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "isolation": args.isolation, "nodes": len(TENANTS), "runs": args.runs,
        "local_steps": args.local_steps, "settings": []}
    with tempfile.TemporaryDirectory(prefix="bench-exchange-") as tmp:
        root = Path(tmp)
        model = init_tiny_model(root / "model", "1m")
        stores = [seed_tenant_store(root / "data", t, 80) for t in TENANTS]
        for label, poll_s in (("flower-default", None), ("fast", fast)):
            result = bench_setting(root / label, model, stores, poll_s=poll_s,
                                   isolation=args.isolation, runs=args.runs,
                                   local_steps=args.local_steps, idle_s=args.idle_s)
            out["settings"].append({"label": label, **result})
            if args.trace is not None:
                shutil.copytree(root / label / "federation", args.trace / label,
                                ignore=shutil.ignore_patterns("*.db", "*.fab", "apps"),
                                dirs_exist_ok=True)
    default, quick = (s["median"] for s in out["settings"])
    out["ratio_default_over_fast"] = {
        key: round(default[key] / quick[key], 2) if quick[key] > 0 else None
        for key in ("flwr_run_s", "train_exchange_s", "evaluate_exchange_s",
                    "train_flower_share_s")}
    out["machine"]["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
