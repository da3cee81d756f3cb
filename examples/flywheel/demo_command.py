"""``hermes-fed demo``: the README's main job (see ``examples.flywheel.demo``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import warnings
from pathlib import Path

from hermes_fed.cli import add_config_flags, config_values

# flag -> DemoConfig field; defaults and help come from the config itself, so the two agree
_FLAGS = ("days", "mode", "sessions_scale", "users", "pii_rate", "golden_scale", "pretrain_steps",
          "base_model", "local_steps", "rounds_per_cycle", "rank", "lr", "lr_schedule", "warmup_steps",
          "temperature", "canary_share", "ab_share", "ab_days", "seed")


def _run(args: argparse.Namespace) -> int:
    from examples.flywheel.demo import DemoConfig, run_demo

    # presidio names every recognizer it loads at INFO; the demo prints its own progress.
    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
    # the report reads the nodes' logs back; opening one says again what each node's own
    # log already said about its redaction set-up
    logging.getLogger("hermes_fed.privacy.detector").setLevel(logging.ERROR)
    # peft asks transformers a deprecated question on every adapter load (transformers 5.24)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # a "Loading weights" bar per model load drowns the progress
    # SIGTERM ends the demo as Ctrl-C does: its processes are stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    values = config_values(args, _FLAGS)
    if values["base_model"] is not None:
        values["base_model"] = Path(values["base_model"]).resolve()
    report = run_demo(DemoConfig(directory=Path(args.dir).resolve(), **values))
    return 0 if report.get("coordinator_log_ok") else 1


def register(parser: argparse.ArgumentParser) -> None:
    from examples.flywheel.demo import DemoConfig
    from hermes_fed.training.learning_rate import LR_SCHEDULES

    parser.add_argument("--dir", default="var/demo", help="working directory (default var/demo)")
    add_config_flags(parser, DemoConfig, _FLAGS, {"mode": ("frozen-a", "exact", "fedavg"),
                                                  "lr_schedule": LR_SCHEDULES})
    parser.set_defaults(func=_run)
