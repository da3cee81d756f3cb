"""Factor probe: goldens with clean requests vs goldens written as the users write them.

The demo's users append contact details to 70% of their requests; the node stores them as
placeholders and trains on surrogates (:mod:`hermes_fed.privacy.surrogates`). This trains one
adapter per (seed, golden style) on one tenant's cold-start goldens -- ``clean`` requests, or
``details``: each golden's request as :meth:`SimTenant.user_turn` writes it, the planted
values replaced by placeholders and the placeholders rendered as surrogates, which is what
the node's trainer sees -- and solves the same held-out tasks both clean and as users write
them, at ``--temperature``. Prints one JSON line per run, then a summary.

    OMP_NUM_THREADS=1 .venv/bin/python bench/flywheel/probe_golden_details.py --seeds 0,1 \
        --style details --steps 400
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _as_users_write(golden: dict[str, Any], tenant: Any, rng: random.Random) -> dict[str, Any]:
    from hermes_fed.privacy.surrogates import with_surrogates

    _, text, planted = tenant.user_turn(golden["task"], rng)
    text = planted.masked(text)
    redacted = {**golden, "task": text,
                "messages": [{**m, "content": text} if m["role"] == "user" else m
                             for m in golden["messages"]]}
    return with_surrogates(redacted)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tenant", default="globex")
    p.add_argument("--style", choices=("clean", "details"), default="details")
    p.add_argument("--goldens-per-type", type=int, default=48, help="the demo: 4 x 12")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--tasks", type=int, default=60)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--temperature", type=float, default=0.3)
    args = p.parse_args()

    import torch

    from examples.flywheel import cold_start_trajectories, default_tenants
    from examples.flywheel.agent import AgentConfig, LocalAgent
    from examples.flywheel.base import SHIPPED_BASE
    from hermes_fed.training.config import LoraTrainingConfig
    from hermes_fed.training.dataset import TrainingExample
    from hermes_fed.training.trainer import train_adapter

    torch.set_num_threads(1)
    tenant = next(t for t in default_tenants() if t.tenant_id == args.tenant)
    tasks = tenant.draw_tasks(args.tasks, 99)
    ask_rng = random.Random(1)
    asks = {"clean": [(t, t.request) for t in tasks],
            "with_details": [(t, tenant.user_turn(t.request, ask_rng)[1]) for t in tasks]}
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.perf_counter()
        goldens = cold_start_trajectories(tenant.task_types, args.goldens_per_type, seed,
                                          table=tenant.table)
        if args.style == "details":
            rng = random.Random(f"golden-users/{tenant.tenant_id}/{seed}")
            goldens = [_as_users_write(g, tenant, rng) for g in goldens]
        examples = [TrainingExample(trajectory=g, weight=5.0, tier="platinum") for g in goldens]
        cfg = LoraTrainingConfig(r=16, alpha=32.0, lr=5e-3, lr_schedule="cosine", warmup_steps=20,
                                 max_steps=args.steps, batch_size=8, max_length=320, seed=seed,
                                 device="cpu")
        result = train_adapter(str(SHIPPED_BASE), examples, cfg)
        agent = LocalAgent(str(SHIPPED_BASE), result.adapter, cfg,
                           AgentConfig(temperature=args.temperature))
        row: dict[str, Any] = {"seed": seed, "style": args.style, "tenant": args.tenant,
                               "steps": args.steps}
        for kind, pairs in asks.items():
            solved = agent.solve(pairs, 7)
            row[kind] = {"correct": sum(o.correct for o in solved),
                         "tool_error": sum(o.tool_error for o in solved),
                         "malformed": sum(o.malformed_call for o in solved)}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"style": args.style, "tasks": args.tasks,
                      "clean": [r["clean"]["correct"] for r in rows],
                      "with_details": [r["with_details"]["correct"] for r in rows]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
