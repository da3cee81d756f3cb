"""``hermes-fed example``: the bundled example log (the README's main job until the
flywheel demo lands)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hermes_fed.privacy import RedactionConfig, Redactor
from hermes_fed.store import Keyring, open_store

from .example import example_paths, load_example


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


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("run", help="append the bundled example sessions to a SQLite log, verify it")
    p.add_argument("--dir", default="var/example", help="where the log and key ring go")
    p.add_argument("--tenant", default="example", help="tenant id")
    p.set_defaults(func=_run)
