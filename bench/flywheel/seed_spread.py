"""How much does one LoRA run's task success depend on its training seed?

Trains one adapter per seed on the same golden trajectories of one tenant (the first
``--goldens`` by id) for ``--steps`` steps, then solves the same ``--tasks`` held-out tasks
greedily and prints JSON: correct answers and malformed calls per seed, and the mean and
sample standard deviation (ddof 1) of the correct answers over the seeds. With
``--eval-every N`` it also solves the tasks with the adapter of every N-th step of each run
(read from the trainer's resumable checkpoint), to see how much the end point of one
trajectory is worth.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/flywheel/seed_spread.py \
        --seeds 0,1,2 --schedule cosine --warmup 30 --out results/seed_spread_cosine.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch

from examples.flywheel import cold_start_trajectories, default_tenants
from examples.flywheel.agent import AgentConfig, LocalAgent
from examples.flywheel.base import SHIPPED_BASE
from hermes_fed.training.config import LoraTrainingConfig
from hermes_fed.training.dataset import TrainingExample
from hermes_fed.training.learning_rate import LR_SCHEDULES
from hermes_fed.training.trainer import CHECKPOINT, TrainingResult, train_adapter


def train(
    base: str, examples: list[TrainingExample], cfg: LoraTrainingConfig, every: int
) -> tuple[TrainingResult, dict[int, dict[str, np.ndarray]]]:
    """Train; with ``every`` > 0 also return the adapter of every ``every``-th step.

    The adapters come from the trainer's resumable checkpoint (which does not change the run,
    invariant T5): the progress callback runs right after its step's checkpoint is written.
    """
    if not every:
        return train_adapter(base, examples, cfg), {}
    snapshots: dict[int, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as ckpt_dir:

        def snapshot(step: int, total: int, loss: float) -> None:
            if step % every == 0 and step < total:
                saved = torch.load(Path(ckpt_dir) / CHECKPOINT, weights_only=True)
                snapshots[step] = {k: v.numpy() for k, v in saved["adapter"].items()}

        cfg = dataclasses.replace(cfg, checkpoint_every=every)
        result = train_adapter(base, examples, cfg, progress=snapshot, checkpoint_dir=ckpt_dir)
    return result, snapshots


def solve(
    base: str, adapter: Mapping[str, np.ndarray], cfg: LoraTrainingConfig, tasks: list[tuple[Any, str]]
) -> int:
    """Correct answers of the adapter on the tasks (greedy)."""
    agent = LocalAgent(base, adapter, cfg, AgentConfig(temperature=0.0))
    return sum(o.correct for o in agent.solve(tasks, 1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default=str(SHIPPED_BASE))
    p.add_argument("--tenant", default="globex")
    p.add_argument("--goldens", type=int, default=95, help="goldens trained on (first by id)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--tasks", type=int, default=36)
    p.add_argument("--seeds", default="0,1,2")
    defaults = {f.name: f.default for f in fields(LoraTrainingConfig)}
    p.add_argument("--lr", type=float, default=5e-3, help="peak learning rate")
    p.add_argument(
        "--schedule",
        default=defaults["lr_schedule"],
        choices=LR_SCHEDULES,
        help="learning-rate schedule (default: LoraTrainingConfig's)",
    )
    p.add_argument("--warmup", type=int, default=defaults["warmup_steps"], help="warmup steps")
    p.add_argument(
        "--min-lr-ratio",
        type=float,
        default=defaults["min_lr_ratio"],
        help="where decay ends, as a share of --lr",
    )
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", type=Path, default=None, help="also write the summary JSON here")
    p.add_argument("--eval-every", type=int, default=0, help="also evaluate every N-th step's adapter")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tenant = next(t for t in default_tenants() if t.tenant_id == args.tenant)
    goldens = sorted(cold_start_trajectories(tenant.task_types, 32, 0), key=lambda g: g["trajectory_id"])[
        : args.goldens
    ]
    examples = [TrainingExample(trajectory=g, weight=5.0, tier="platinum") for g in goldens]
    tasks = [(x, x.request) for x in tenant.draw_tasks(args.tasks, 777)]
    runs: list[dict[str, Any]] = []
    cfg = None
    started = time.perf_counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.perf_counter()
        cfg = LoraTrainingConfig(
            r=args.rank,
            alpha=args.alpha,
            lr=args.lr,
            lr_schedule=args.schedule,
            warmup_steps=args.warmup,
            min_lr_ratio=args.min_lr_ratio,
            max_steps=args.steps,
            batch_size=args.batch_size,
            max_length=320,
            seed=seed,
            device="cpu",
        )
        result, snapshots = train(args.base, examples, cfg, args.eval_every)
        along = {step: solve(args.base, adapter, cfg, tasks) for step, adapter in sorted(snapshots.items())}
        agent = LocalAgent(args.base, result.adapter, cfg, AgentConfig(temperature=0.0))
        outs = agent.solve(tasks, 1)
        by_type: dict[str, int] = {}
        for (instance, _), o in zip(tasks, outs, strict=True):
            by_type[instance.task_type] = by_type.get(instance.task_type, 0) + int(o.correct)
        runs.append(
            {
                "seed": seed,
                "correct": sum(o.correct for o in outs),
                "malformed": sum(o.malformed_call for o in outs),
                "no_call": sum(o.tool_call is None and not o.malformed_call for o in outs),
                "tool_error": sum(o.tool_error for o in outs),
                "correct_by_type": by_type,
                "train_loss_last": result.metrics["train_loss_last"],
                "train_loss_mean": result.metrics["train_loss_mean"],
                "train_seconds": round(result.metrics["train_seconds"], 1),
                "wall_seconds": round(time.perf_counter() - t0, 1),
            }
        )
        if along:
            runs[-1]["correct_along_the_run"] = {**along, args.steps: runs[-1]["correct"]}
        print(json.dumps(runs[-1]), flush=True)
    correct = [r["correct"] for r in runs]
    malformed = [r["malformed"] for r in runs]
    summary = {
        "tenant": args.tenant,
        "goldens": len(examples),
        "steps": args.steps,
        "tasks": args.tasks,
        "config": {k: v for k, v in (cfg.to_dict() if cfg else {}).items() if k != "seed"},
        "runs": runs,
        "correct_mean": statistics.fmean(correct),
        "correct_sd": statistics.stdev(correct) if len(correct) > 1 else 0.0,
        "malformed_mean": statistics.fmean(malformed),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "threads": args.threads,
        "machine": platform.machine(),
        "load_average_end": list(os.getloadavg()),
    }
    print(json.dumps(summary, indent=2))
    print(
        f"correct per seed {correct} of {args.tasks}: mean {summary['correct_mean']:.2f}, "
        f"sd {summary['correct_sd']:.2f}; malformed {malformed}"
    )
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
