"""``hermes-fed example``: the bundled example log (the README's main job until the
flywheel demo lands)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from examples.flywheel.base import BaseRecipe  # stdlib-only at import: the flags come from it
from examples.flywheel.example import example_paths, load_example
from hermes_fed.cli import add_config_flags, config_values
from hermes_fed.privacy import RedactionConfig, Redactor
from hermes_fed.store import Keyring, open_store


def _run(args: argparse.Namespace) -> int:
    url, keyring_path = example_paths(Path(args.dir), args.tenant)
    keyring = Keyring.load_or_create(keyring_path, args.tenant)
    # Invariant 7: every event passes the redaction gate before it is appended.
    redactor = Redactor(RedactionConfig(), tenant_secret=keyring.hmac_secret)
    with open_store(url, args.tenant, keyring=keyring, gate=redactor.redact_new_events) as store:
        summary = load_example(store)
    print(f"tenant {args.tenant}: log {url}")
    print(f"  sessions {summary.sessions}, appended {summary.appended}, already present {summary.duplicates}")
    for event_type, n in sorted(summary.by_type.items()):
        print(f"  {event_type:<24} {n}")
    print(f"  verify: {summary.verify}")
    return 0 if summary.verify.ok else 1


_RECIPE_FLAGS = ("size", "seed", "steps", "lr", "echo", "copy_steps", "copy_echo", "corpus")


def _build_base(args: argparse.Namespace) -> int:
    from examples.flywheel.base import build_base

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    progress = logging.getLogger("examples.flywheel.pretrain")  # "pretrain step N loss L" every 100
    progress.setLevel(logging.INFO)
    progress.addHandler(logging.StreamHandler(sys.stdout))
    info = build_base(Path(args.dir), BaseRecipe(**config_values(args, _RECIPE_FLAGS)))
    print(json.dumps(info, indent=2))
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("run", help="append the bundled example sessions to a SQLite log, verify it")
    p.add_argument("--dir", default="var/example", help="where the log and key ring go")
    p.add_argument("--tenant", default="example", help="tenant id")
    p.set_defaults(func=_run)
    p = sub.add_parser("build-base", help="pre-train the simulator's base model (the demo's recipe)")
    p.add_argument("dir", help="output directory (must not hold a model yet)")
    add_config_flags(p, BaseRecipe, _RECIPE_FLAGS, {"size": ("1m", "2m", "10m"), "corpus": (1, 2, 3)})
    p.set_defaults(func=_build_base)
