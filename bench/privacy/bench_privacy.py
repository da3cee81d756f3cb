"""Privacy rounds: utility vs privacy (DP), and what SecAgg+ costs against a plain round.

Part 1 (in-process, the same code the deployed round runs): N frozen-a rounds of
tenant-level DP-FedAvg with server-side clipping and noise (``coordinator.rounds.dp``) over
M tiny-model tenants (``tenant_node.flower.local_round``), for no DP and for three target
epsilons. The noise multiplier of each target is the smallest ``z`` whose cumulative
epsilon after N rounds (RDP accountant, delta) is at most the target; the clip ``C`` is the
median update norm of the first no-DP round. Reported: held-out log-likelihood per token
of the final adapter (example-weighted over tenants) and the accountant's epsilon.

Part 2 (deployment mode on 127.0.0.1): one plain frozen-a round and one SecAgg+ round on
the same SuperLink/SuperNodes: ``flwr run`` wall time, the train exchange (SecAgg+: all four
stages), and the bytes the nodes sent/received on the wire (capture relay) and as Flower
payloads; the SecAgg+ quantisation bound and the largest difference between the two
aggregates (same parent, same local training).

    .venv/bin/python bench/privacy/bench_privacy.py --rounds 3 --out bench/results/privacy.json

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


def noise_for_epsilon(target: float, rounds: int, delta: float) -> float:
    """Smallest z (bisection) with epsilon after ``rounds`` full-participation rounds <= target."""
    from hermes_fed.privacy.dp import RdpAccountant

    lo, hi = 0.05, 200.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if RdpAccountant().epsilon_after(mid, 1.0, delta, rounds=rounds) > target:
            lo = mid
        else:
            hi = mid
    return hi


def _heldout(settings: list[Any], datas: list[Any], spec: Any, tensors: Any) -> float:
    from tenant_node.flower.local_round import evaluate_locally

    total = n = 0.0
    for s, d in zip(settings, datas, strict=True):
        for cell in evaluate_locally(s, d, spec, tensors):
            if cell.name == "heldout.adapter":
                total += cell.total
                n += cell.n
    return total / n


def utility(root: Path, model: Path, tenants: int, rounds: int, epsilons: list[float],
            delta: float, max_steps: int, lr: float) -> dict[str, Any]:
    from dataclasses import replace

    import numpy as np
    import torch

    from coordinator.rounds.config import RoundsConfig
    from coordinator.rounds.dp import PrivacySettings, noise_the_mean
    from hermes_fed.aggregation.base import make_aggregator
    from hermes_fed.aggregation.records import AggregationConfig, ClientUpdate
    from hermes_fed.federation.node_settings import NodeSettings
    from hermes_fed.federation.round_spec import RoundSpec
    from hermes_fed.federation.settings import RoundSettings
    from hermes_fed.privacy.dp import RdpAccountant, global_norm
    from hermes_fed.privacy.updates import clip_to_reference
    from hermes_fed.training.adapter import adapter_state, build_peft_model, load_base_model
    from tenant_node.flower.local_round import load_local_data, train_locally
    from tests.integration.federation_data import seed_tenant_store

    torch.set_num_threads(1)
    data = [seed_tenant_store(root / "data", f"t{i}", 80) for i in range(tenants)]
    settings = [NodeSettings(tenant_id=t.tenant, store=t.store_url, base_model=str(model),
                             heldout_fraction=0.4) for t in data]
    datas = [load_local_data(s) for s in settings]
    cfg = RoundsConfig(coordinator_dir="-", base_model=str(model), mode="frozen-a",
                       settings=RoundSettings(rank=8, alpha=16.0, local_steps=max_steps, lr=lr,
                                              lr_schedule="constant", warmup_steps=0,
                                              max_length=256))
    base, _ = load_base_model(str(model))
    init = adapter_state(build_peft_model(base, cfg.settings.training_config(cfg.mode)))
    rank, alpha = cfg.settings.rank, cfg.settings.alpha

    def spec(number: int) -> RoundSpec:
        return RoundSpec(round=number, mode="frozen-a", parent_version="bench",
                         settings=replace(cfg.settings, seed=number))

    def run(privacy: PrivacySettings | None, seed: int) -> tuple[float, list[float], float]:
        rng = np.random.default_rng(seed)
        tensors = dict(init)
        norms: list[float] = []
        started = time.perf_counter()
        for number in range(1, rounds + 1):
            updates = []
            for s, d in zip(settings, datas, strict=True):
                up = train_locally(s, d, spec(number), tensors)
                updates.append(ClientUpdate(s.tenant_id, up.num_examples, up.adapter))
                norms.append(global_norm({k: up.adapter[k] - tensors[k] for k in up.adapter}))
            agg = make_aggregator("frozen-a", AggregationConfig(rank=rank))
            if privacy is None:
                tensors = agg.aggregate(updates, scale=alpha / rank, previous=tensors).tensors
            else:  # what the server-side DP strategy does (coordinator.rounds.strategy)
                private = [ClientUpdate(u.node_id, 1, clip_to_reference(
                    u.tensors, tensors, privacy.dp_clip)[0]) for u in updates]
                mean = agg.aggregate(private, scale=alpha / rank, previous=tensors).tensors
                tensors = noise_the_mean(mean, sorted(updates[0].tensors), len(updates),
                                         privacy, rng)
        return _heldout(settings, datas, spec(rounds), tensors), norms, \
            time.perf_counter() - started

    base_ll = _heldout(settings, datas, spec(0), init)
    no_dp, norms, seconds = run(None, 0)
    clip = float(np.median(norms[:tenants]))
    rows: list[dict[str, Any]] = [{"epsilon": None, "noise_multiplier": 0.0, "clip": None,
                                   "heldout_loglik": no_dp, "seconds": seconds}]
    for target in epsilons:
        z = noise_for_epsilon(target, rounds, delta)
        privacy = PrivacySettings(dp="server", dp_clip=clip, dp_noise_multiplier=z,
                                  dp_delta=delta)
        ll, _, seconds = run(privacy, 1)
        accountant = RdpAccountant()
        accountant.step(z, 1.0, rounds)
        rows.append({"epsilon_target": target, "epsilon": accountant.epsilon(delta),
                     "noise_multiplier": z, "clip": clip, "heldout_loglik": ll,
                     "seconds": seconds})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"tenants": tenants, "rounds": rounds, "delta": delta, "max_steps": max_steps,
            "lr": lr, "heldout_loglik_base_adapter": base_ll,
            "update_norms_round1": norms[:tenants], "runs": rows}


def secagg_cost(root: Path, model: Path, nodes: int, max_steps: int) -> dict[str, Any]:
    import numpy as np

    from coordinator.deploy.local_federation import LocalFederation, NodeSpec, read_run_report
    from coordinator.logs.registry import AdapterRegistry
    from tests.integration.federation_data import seed_tenant_store

    tenants = [seed_tenant_store(root / "fed-data", f"n{i}", 80) for i in range(nodes)]
    out: dict[str, Any] = {"nodes": nodes}
    with LocalFederation(root / "fed", capture=True) as fed:
        assert fed.relay is not None
        for t in tenants:
            fed.add_node(NodeSpec(t.tenant, t.store_url, str(model), {"heldout-fraction": 0.4}))
        for name, extra in (("plain", {}), ("secagg", {"secagg": 1})):
            coord = root / f"coord-{name}"
            up0, down0 = fed.relay.totals()
            started = time.perf_counter()
            outcome = fed.run({"coordinator-dir": str(coord), "base-model": str(model),
                               "mode": "frozen-a", "min-nodes": nodes, "local-steps": max_steps,
                               "batch-size": 8, "rank": 8, "alpha": 16.0, **extra})
            wall = time.perf_counter() - started
            up1, down1 = fed.relay.totals()
            (rep,) = read_run_report(coord, outcome.run_id)["rounds"]
            with AdapterRegistry.open(coord) as registry:
                tensors = registry.load(rep["version"])
            out[name] = {
                "flwr_run_wall_s": wall, "train_exchange_s": rep["timing"]["train_exchange"],
                "evaluate_exchange_s": rep["timing"]["evaluate_exchange"],
                "local_training_max_s": rep["timing"]["local_training_max"],
                "wire_bytes_up_per_node": (up1 - up0) / nodes,
                "wire_bytes_down_per_node": (down1 - down0) / nodes,
                "payload_bytes_up_per_node": [n["bytes_up"] for n in rep["nodes"]],
                "payload_bytes_down_per_node": [n["bytes_down"] for n in rep["nodes"]],
                "heldout_after": rep["heldout_after"],
                "secagg": (rep.get("privacy") or {}).get("secagg"),
                "_tensors": tensors}
            print(json.dumps({k: v for k, v in out[name].items() if k != "_tensors"}),
                  file=sys.stderr, flush=True)
    plain, secure = out["plain"].pop("_tensors"), out["secagg"].pop("_tensors")
    out["max_abs_difference_secagg_vs_plain"] = max(
        float(np.max(np.abs(plain[k] - secure[k]))) for k in plain)
    out["quantization_bound"] = out["secagg"]["secagg"]["quantization_bound"]
    out["ratio_secagg_over_plain"] = {
        "flwr_run_wall": out["secagg"]["flwr_run_wall_s"] / out["plain"]["flwr_run_wall_s"],
        "train_exchange": out["secagg"]["train_exchange_s"] / out["plain"]["train_exchange_s"],
        "wire_bytes_up": out["secagg"]["wire_bytes_up_per_node"]
        / out["plain"]["wire_bytes_up_per_node"],
        "wire_bytes_down": out["secagg"]["wire_bytes_down_per_node"]
        / out["plain"]["wire_bytes_down_per_node"]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epsilons", default="1,8,64")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--skip-utility", action="store_true")
    parser.add_argument("--skip-deployment", action="store_true")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()

    from hermes_fed.training.tiny_model import init_tiny_model

    with tempfile.TemporaryDirectory(prefix="bench-privacy-") as tmp:
        root = Path(tmp)
        model = init_tiny_model(root / "model", "1m")
        body: dict[str, Any] = {"machine": {"cpus": os.cpu_count(),
                                            "load_avg_1m_at_start": os.getloadavg()[0]}}
        if not args.skip_utility:
            body["utility_vs_privacy"] = utility(
                root, model, args.tenants, args.rounds,
                [float(e) for e in args.epsilons.split(",")], args.delta, args.max_steps,
                args.lr)
        if not args.skip_deployment:
            body["secagg_vs_plain"] = secagg_cost(root, model, args.tenants, 2)
        body["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]
    text = json.dumps(body, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
