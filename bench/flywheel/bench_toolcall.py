"""Does LoRA training on golden trajectories teach a tiny base to make tool calls at all?

Trains one adapter on ``--golden`` cold-start trajectories (all four task families) for
each ``--steps`` value, then runs the greedy agent loop on ``--eval`` fresh tasks and
reports the share of well-formed tool calls (right tool, arguments the tool accepts), of
malformed calls, and task success per family, beside the base model alone. Prints JSON.

    .venv/bin/python bench/flywheel/bench_toolcall.py --base var/bench-flywheel/base-1m-cf-pre2000-s0
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch

from examples.flywheel.agent import AgentConfig, LocalAgent
from examples.flywheel.coldstart import cold_start_trajectories
from examples.flywheel.tasks import FAMILIES
from hermes_fed.training.config import LoraTrainingConfig
from hermes_fed.training.dataset import TrainingExample
from hermes_fed.training.trainer import train_adapter


def measure(base: Path, adapter: Any, lora: LoraTrainingConfig, n: int) -> dict[str, Any]:
    rng = random.Random(12345)
    types = sorted(FAMILIES)
    tasks = [FAMILIES[types[i % len(types)]].generate(rng, "eval_table") for i in range(n)]
    agent = LocalAgent(base, adapter, lora, AgentConfig(temperature=0.0))
    outcomes = agent.solve([(t, t.request) for t in tasks], seed=0)
    by_type: dict[str, list[bool]] = {}
    examples: dict[str, Any] = {}
    for t, o in zip(tasks, outcomes, strict=True):
        by_type.setdefault(t.task_type, []).append(o.correct)
        examples.setdefault(t.task_type, [t.request, *[m.get("tool_calls") or m["content"]
                                                       for m in o.messages[2:]]])
    return {
        "well_formed_call": float(np.mean([o.tool_call is not None and not o.tool_error
                                           for o in outcomes])),
        "any_call": float(np.mean([o.tool_call is not None for o in outcomes])),
        "malformed_call": float(np.mean([o.malformed_call for o in outcomes])),
        "right_arguments": float(np.mean([o.tool_call is not None
                                          and o.tool_call.name == t.tool
                                          and o.tool_call.arguments == dict(t.arguments)
                                          for t, o in zip(tasks, outcomes, strict=True)])),
        "success": float(np.mean([o.correct for o in outcomes])),
        **{f"success_{k}": float(np.mean(v)) for k, v in sorted(by_type.items())},
        "examples": examples,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="base model directory")
    p.add_argument("--steps", default="50,150", help="comma-separated LoRA step counts")
    p.add_argument("--golden", type=int, default=16, help="golden trajectories per family")
    p.add_argument("--eval", type=int, default=32, help="fresh evaluation tasks")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-length", type=int, default=320,
                   help="tokens per training example (the copy-friendly tokenizer's goldens "
                        "reach ~265)")
    p.add_argument("--seed", type=int, default=0, help="LoRA seed")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    base = Path(args.base)
    golden = cold_start_trajectories(sorted(FAMILIES), args.golden, seed=0, table="eval_table")
    examples = [TrainingExample(g, 1.0, "platinum") for g in golden]
    report: dict[str, Any] = {"base": str(base), "golden": len(golden),
                              "base_model": measure(base, None, LoraTrainingConfig(), args.eval)}
    for steps in (int(s) for s in args.steps.split(",")):
        lora = LoraTrainingConfig(r=args.rank, alpha=2.0 * args.rank, lr=args.lr, batch_size=8,
                                  max_length=args.max_length, device="cpu", max_steps=steps,
                                  seed=args.seed)
        started = time.perf_counter()
        result = train_adapter(base, examples, lora)
        report[f"steps_{steps}"] = {
            "train_seconds": time.perf_counter() - started,
            "loss_first": result.metrics["train_loss_first"],
            "loss_last": result.metrics["train_loss_last"],
            **measure(base, result.adapter, lora, args.eval),
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
