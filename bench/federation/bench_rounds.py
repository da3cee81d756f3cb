"""Federated rounds: bytes per node per mode (r=8, r=16) and where a round's time goes.

Part 1 (no Flower, exact): bytes of one node's adapter payload per round for each mode and
rank, against shipping the full model, from the tiny model's real LoRA tensors.

Part 2 (deployment mode on 127.0.0.1): a SuperLink and N SuperNodes as real processes, one
round per mode, with the ClientApp either started per message (``--isolation subprocess``,
Flower's default) or kept warm (``--isolation process`` + ``tenant_node.flower.warm_clientapp``).
For each run: ``flwr run`` wall time, the round's train/evaluate exchange times, the
slowest node's local training and handler time, aggregation time, the remainder that is
Flower messaging + process start-up, and the bytes the nodes sent/received on the wire
(captured by a relay).

    .venv/bin/python bench/federation/bench_rounds.py --nodes 3 --out bench/results/federation.json

Prints one JSON document; no thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def payload_sizes(model_dir: Path, ranks: list[int]) -> dict[str, Any]:
    import torch

    from hermes_fed.federation.settings import RoundSettings
    from hermes_fed.training.adapter import adapter_state, build_peft_model, load_base_model

    torch.set_num_threads(1)
    base, _ = load_base_model(model_dir)
    full = sum(p.numel() * p.element_size() for p in base.parameters())
    out: dict[str, Any] = {"full_model_bytes": full, "ranks": {}}
    for r in ranks:
        settings = RoundSettings(rank=r, alpha=2.0 * r)
        base, _ = load_base_model(model_dir)
        state = adapter_state(build_peft_model(base, settings.training_config("fedavg")))
        a = sum(v.nbytes for k, v in state.items() if ".lora_A." in k)
        b = sum(v.nbytes for k, v in state.items() if ".lora_B." in k)
        out["ranks"][str(r)] = {
            mode: {"down": a + b, "up": (b if mode == "frozen-a" else a + b),
                   "up_fraction_of_full_model": (b if mode == "frozen-a" else a + b) / full}
            for mode in ("fedavg", "exact", "frozen-a")
        }
    return out


def deployment(root: Path, model: Path, nodes: int, modes: list[str], isolation: str,
               max_steps: int) -> list[dict[str, Any]]:
    from coordinator.deploy.local_federation import LocalFederation, NodeSpec, read_run_report
    from tests.integration.federation_data import seed_tenant_store

    tenants = [seed_tenant_store(root / "data", f"t{i}", 80) for i in range(nodes)]
    results = []
    with LocalFederation(root / f"fed-{isolation}", capture=True, isolation=isolation) as fed:
        assert fed.relay is not None
        for t in tenants:
            fed.add_node(NodeSpec(t.tenant, t.store_url, str(model), {"heldout-fraction": 0.4}))
        for mode in modes:
            up0, down0 = fed.relay.totals()
            started = time.perf_counter()
            outcome = fed.run({"coordinator-dir": str(root / f"coord-{isolation}"),
                               "base-model": str(model), "mode": mode, "min-nodes": nodes,
                               "local-steps": max_steps, "batch-size": 8, "rank": 8,
                               "alpha": 16.0})
            wall = time.perf_counter() - started
            up1, down1 = fed.relay.totals()
            (rep,) = read_run_report(root / f"coord-{isolation}", outcome.run_id)["rounds"]
            t = rep["timing"]
            results.append({
                "isolation": isolation, "mode": mode, "nodes": nodes,
                "flwr_run_wall_s": wall,
                "train_exchange_s": t["train_exchange"],
                "evaluate_exchange_s": t["evaluate_exchange"],
                "local_training_max_s": t["local_training_max"],
                "node_handler_max_s": t["node_handler_max"],
                "aggregation_s": t["aggregation"],
                "publish_s": t["publish"],
                "messaging_and_startup_s": t["messaging"],
                "wire_bytes_up_per_node": (up1 - up0) / nodes,
                "wire_bytes_down_per_node": (down1 - down0) / nodes,
                "payload_bytes_up_per_node": [n["bytes_up"] for n in rep["nodes"]],
                "payload_bytes_down_per_node": [n["bytes_down"] for n in rep["nodes"]],
                "residual": rep["residual"],
                "heldout_before": rep["heldout_before"], "heldout_after": rep["heldout_after"],
            })
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--modes", default="frozen-a,exact,fedavg")
    parser.add_argument("--isolation", default="subprocess,process")
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--ranks", default="8,16")
    parser.add_argument("--skip-deployment", action="store_true")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()

    from hermes_fed.training.tiny_model import init_tiny_model

    with tempfile.TemporaryDirectory(prefix="bench-fed-") as tmp:
        root = Path(tmp)
        model = init_tiny_model(root / "model", "1m")
        body: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "load_avg_1m_at_start": os.getloadavg()[0]},
            "payload": payload_sizes(model, [int(r) for r in args.ranks.split(",")]),
            "deployment": [],
        }
        if not args.skip_deployment:
            for isolation in args.isolation.split(","):
                body["deployment"] += deployment(root, model, args.nodes,
                                                 args.modes.split(","), isolation,
                                                 args.max_steps)
        body["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]
    text = json.dumps(body, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
