"""How much does one LoRA run's task success depend on its training seed?

Trains one adapter per seed on the same golden trajectories of one tenant (the first
``--goldens`` by id) for ``--steps`` steps, then solves the same ``--tasks`` held-out tasks
greedily and prints JSON: correct answers and malformed calls per seed.

    OMP_NUM_THREADS=1 .venv/bin/python bench/flywheel/seed_spread.py --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

from hermes_fed.sim import cold_start_trajectories, default_tenants
from hermes_fed.sim.agent import AgentConfig, LocalAgent
from hermes_fed.sim.base import SHIPPED_BASE
from hermes_fed.training.config import LoraTrainingConfig
from hermes_fed.training.dataset import TrainingExample
from hermes_fed.training.trainer import train_adapter


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default=str(SHIPPED_BASE))
    p.add_argument("--tenant", default="globex")
    p.add_argument("--goldens", type=int, default=95, help="goldens trained on (first by id)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--tasks", type=int, default=36)
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args()
    torch.set_num_threads(1)
    tenant = next(t for t in default_tenants() if t.tenant_id == args.tenant)
    goldens = sorted(cold_start_trajectories(tenant.task_types, 32, 0),
                     key=lambda g: g["trajectory_id"])[:args.goldens]
    examples = [TrainingExample(trajectory=g, weight=5.0, tier="platinum") for g in goldens]
    tasks = [(x, x.request) for x in tenant.draw_tasks(args.tasks, 777)]
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        cfg = LoraTrainingConfig(r=16, alpha=32.0, lr=5e-3, max_steps=args.steps, batch_size=8,
                                 max_length=320, seed=seed, device="cpu")
        result = train_adapter(args.base, examples, cfg)
        agent = LocalAgent(args.base, result.adapter, cfg, AgentConfig(temperature=0.0))
        outs = agent.solve(tasks, 1)
        runs.append({"seed": seed, "correct": sum(o.correct for o in outs),
                     "malformed": sum(o.malformed_call for o in outs)})
        print(json.dumps(runs[-1]), flush=True)
    print(json.dumps({"tenant": args.tenant, "goldens": len(examples), "steps": args.steps,
                      "tasks": args.tasks, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
