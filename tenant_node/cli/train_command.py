"""``hermes-fed node train``: one local training run on the node's own log."""

from __future__ import annotations

import argparse
import json
from typing import Any


def train(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from hermes_fed.errors import NothingToTrainError
    from hermes_fed.training.config import LoraTrainingConfig
    from tenant_node.config import load_node_config
    from tenant_node.ingest.runtime import open_existing_node_store
    from tenant_node.local_training import plan_training, train_on_node

    config = load_node_config(args.config)
    lora = LoraTrainingConfig(
        r=args.r,
        alpha=args.alpha,
        lr=args.lr,
        max_steps=args.steps,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
        device=args.device,
    )
    store = open_existing_node_store(config)
    try:
        try:
            plan = plan_training(
                store,
                target_n=args.target_n,
                seed=args.seed,
                heldout_fraction=args.heldout_fraction,
                quality=config.quality,
            )
        except NothingToTrainError as exc:
            print(f"nothing to train: {exc}")
            return 0
        print(
            f"tenant {config.tenant_id}: selected {len(plan.selected)} "
            f"({', '.join(f'{t} {n}' for t, n in plan.manifest.n_by_tier.items() if n)}), "
            f"held out {len(plan.heldout)}, preference pairs {len(plan.pairs)}"
        )
        with Progress(
            TextColumn("training"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TimeRemainingColumn(),
        ) as bar:
            task = bar.add_task("train", total=args.steps, loss=float("nan"))

            def progress(step: int, total: int, loss: float) -> None:
                bar.update(task, completed=step, total=total, loss=loss)

            run_id, outcome = train_on_node(
                store,
                plan,
                base_model_dir=args.base_model,
                output_root=args.out,
                config=lora,
                progress=progress,
            )
    finally:
        store.close()
    shown = {k: round(v, 4) for k, v in sorted(outcome.metrics.items())}
    print(f"run {run_id}" + (" (resumed from its earlier result)" if outcome.resumed else ""))
    print(f"adapter: {outcome.adapter_dir}")
    print(json.dumps(shown, indent=2) if args.json else "\n".join(f"  {k:<28} {v}" for k, v in shown.items()))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="select from the quality read model, train a LoRA adapter locally, evaluate, "
        "record the run in the log",
    )
    p.add_argument("--config", required=True, help="node TOML file (store, key ring)")
    p.add_argument("--base-model", required=True, help="local HF base-model directory")
    p.add_argument("--out", default="var/runs", help="where run directories go (default var/runs)")
    p.add_argument("--target-n", type=int, default=1000, help="selection target N (default 1000)")
    p.add_argument("--heldout-fraction", type=float, default=0.2, help="held-out share (default 0.2)")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps (default 100)")
    p.add_argument("--r", type=int, default=8, help="LoRA rank (default 8)")
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (default 16)")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate (default 2e-3)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--max-length", type=int, default=512, help="max tokens per example (default 512)")
    p.add_argument("--seed", type=int, default=0, help="seed of selection and training (default 0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--json", action="store_true", help="print metrics as JSON")
    p.set_defaults(func=train)
