"""``hermes-fed demo``: the README's main job (see ``coordinator.demo``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from coordinator.demo import DemoConfig, run_demo

    # presidio names every recognizer it loads at INFO; the demo prints its own progress.
    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
    config = DemoConfig(
        directory=Path(args.dir).resolve(),
        rounds=args.rounds,
        mode=args.mode,
        sessions_scale=args.sessions_scale,
        pretrain_steps=args.pretrain_steps,
        local_steps=args.local_steps,
        seed=args.seed,
    )
    report = run_demo(config)
    return 0 if report.get("coordinator_log_ok") else 1


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default="var/demo", help="working directory (default var/demo)")
    parser.add_argument("--rounds", type=int, default=2, help="federated rounds (default 2)")
    parser.add_argument(
        "--mode",
        default="frozen-a",
        choices=["frozen-a", "exact", "fedavg"],
        help="aggregation mode (default frozen-a)",
    )
    parser.add_argument(
        "--sessions-scale",
        type=float,
        default=1.0,
        help="multiplies every tenant's sessions per round (default 1.0)",
    )
    parser.add_argument(
        "--pretrain-steps",
        type=int,
        default=400,
        help="generic tool-use pre-training steps of the tiny base (default 400; cached)",
    )
    parser.add_argument("--local-steps", type=int, default=8, help="local LoRA steps per round (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.set_defaults(func=_run)
