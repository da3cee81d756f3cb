"""``hermes-fed model ...``: build a tiny base model, train/evaluate an adapter from JSONL."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from hermes_fed.cli import add_config_flags, config_values
from hermes_fed.errors import FormatError
from hermes_fed.training.config import LoraTrainingConfig  # stdlib-only at import, as above
from hermes_fed.training.learning_rate import LR_SCHEDULES

_SCHEDULE_FLAGS = ("lr_schedule", "warmup_steps", "min_lr_ratio")


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _init_tiny(args: argparse.Namespace) -> int:
    _offline()
    from hermes_fed.training.adapter import base_model_sha256
    from hermes_fed.training.tiny_model import init_tiny_model

    out = init_tiny_model(args.dir, args.size, seed=args.seed)
    print(json.dumps({"dir": str(out), "size": args.size, "base_model_sha256": base_model_sha256(out)}))
    return 0


def _read_trajectories(path: Path) -> dict[str, dict[str, Any]]:
    """The training rows of a JSONL file by trajectory id; a bad line is a FormatError
    naming it (nothing is trained)."""
    by_id: dict[str, dict[str, Any]] = {}
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise FormatError(f"{path}:{number}: not JSON ({exc.msg})") from None
                if not isinstance(row, dict) or not row.get("trajectory_id"):
                    raise FormatError(f"{path}:{number}: a row must be an object with a "
                                      "trajectory_id")
                by_id[str(row["trajectory_id"])] = row
    except OSError as exc:
        raise FormatError(f"cannot read {path}: {exc.strerror}") from None
    if not by_id:
        raise FormatError(f"{path}: no trajectories")
    return by_id


def _train(args: argparse.Namespace) -> int:
    _offline()
    from rich.progress import Progress

    from hermes_fed.training.dataset import TrainingExample, split_heldout
    from hermes_fed.training.run import run_training

    config = LoraTrainingConfig(
        r=args.rank,
        alpha=args.alpha,
        lr=args.lr,
        **config_values(args, _SCHEDULE_FLAGS),
        max_steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        frozen_a=args.frozen_a,
        checkpoint_every=args.checkpoint_every,
    )
    by_id = _read_trajectories(Path(args.data))
    split = split_heldout(by_id, args.heldout_fraction, args.seed)
    selected = [
        TrainingExample(by_id[t], float(by_id[t].get("weight", 1.0)), str(by_id[t].get("tier", "")))
        for t in split.train
    ]
    heldout = [by_id[t] for t in split.heldout]
    with Progress(transient=True) as bar:
        task = bar.add_task("training", total=None)

        def progress(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, description=f"training loss={loss:.3f}")

        outcome = run_training(
            args.base,
            selected,
            heldout,
            config,
            args.out,
            parent_version=args.parent_version,
            progress=progress,
        )
    print(
        json.dumps(
            {"adapter_dir": str(outcome.adapter_dir), "resumed": outcome.resumed, "metrics": outcome.metrics},
            indent=2,
            sort_keys=True,
        )
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    from hermes_fed.training.adapter import MANIFEST

    print((Path(args.adapter_dir) / MANIFEST).read_text(), end="")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``model`` sub-commands."""
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("init-tiny", help="build a tiny Llama-style model + tokenizer offline")
    p.add_argument("dir", help="output directory (a Hugging Face model directory)")
    p.add_argument("--size", choices=("1m", "2m", "10m"), default="1m", help="model size")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and tokenizer corpus")
    p.set_defaults(func=_init_tiny)

    p = sub.add_parser("train", help="train + evaluate a LoRA adapter on trajectory JSONL")
    p.add_argument("base", help="base model directory")
    p.add_argument("data", help="JSONL: one trajectory per line (optional weight, tier)")
    p.add_argument("out", help="run directory (resumed when it holds a checkpoint)")
    p.add_argument("--heldout-fraction", type=float, default=0.1, help="held-out share")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (else epochs)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the data")
    p.add_argument("--batch-size", type=int, default=8, help="examples per batch")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank")
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    add_config_flags(p, LoraTrainingConfig, _SCHEDULE_FLAGS, {"lr_schedule": LR_SCHEDULES})
    p.add_argument("--seed", type=int, default=0, help="seed of split, order and init")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="device")
    p.add_argument("--frozen-a", action="store_true", help="FFA-LoRA: A fixed from the seed")
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps per checkpoint")
    p.add_argument("--parent-version", default=None, help="adapter version trained from")
    p.set_defaults(func=_train)

    p = sub.add_parser("show", help="print an adapter's hermes manifest")
    p.add_argument("adapter_dir", help="adapter directory")
    p.set_defaults(func=_show)
