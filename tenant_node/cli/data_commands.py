"""``hermes-fed node import|export|assign``: data in and out of the local log.

``import`` and ``assign`` append through the same redaction gate as the daemon (the store
is opened with it), so the CLI is no back door around redaction (invariant 7).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

FORMATS = ("hermes", "openai")


def _readable_file(path: Path) -> None:
    """Refuse a missing or unreadable input before anything is opened or created."""
    from hermes_fed.errors import HermesFedError

    if not path.exists():
        raise HermesFedError(f"{path}: no such file")
    if not path.is_file():
        raise HermesFedError(f"{path}: not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise HermesFedError(f"{path}: cannot read ({exc.strerror})") from None


def import_file(args: argparse.Namespace) -> int:
    """Import a JSONL file; exit 1 when more than ``--max-bad-lines`` lines were bad, or when
    the destination refused the import itself (printed once, not once per line)."""
    from hermes_fed.errors import ConfigError
    from hermes_fed.formats.importer import ImportAborted, import_lines
    from tenant_node.config import load_node_config
    from tenant_node.ingest.runtime import open_node_store

    path = Path(args.file)
    curated = None
    if args.curated is not False:
        from hermes_fed.formats.importer import CuratedMark

        try:
            curated = CuratedMark(args.curated)
        except ValueError as exc:
            raise ConfigError(f"--curated: {exc}") from None
        if args.via_daemon:
            raise ConfigError("--curated writes TrajectoryCurated events, which a node accepts "
                              "only from its own store, not over ingest: drop --via-daemon")
    if args.max_bad_lines < 0:
        raise ConfigError(f"--max-bad-lines must be >= 0, got {args.max_bad_lines}")
    _readable_file(path)
    config = load_node_config(args.config)
    closer: Any
    if args.via_daemon:
        # Through the running node: its redactor (and placeholder state) and its single
        # writer, instead of a second process writing the same log.
        from hermes_fed.client import IngestClient

        root = Path(config.tls.cert_file).read_bytes() if config.tls.enabled else None
        client = IngestClient(config.listen, tenant_id=config.tenant_id,
                              token=config.resolved_token(), root_certificates=root)
        append, closer = client.append, client
    else:
        store = open_node_store(config)
        append, closer = store.append, store
    try:
        with path.open("rb") as fh:
            report = import_lines(fh, args.format, append, batch_size=args.batch_size,
                                  source=args.source or path.stem, curated=curated)
    except ImportAborted as exc:
        for bad in exc.report.bad_lines:
            print(f"{path}:{bad}", file=sys.stderr)
        raise
    finally:
        closer.close()
    for bad in report.bad_lines:
        print(f"{path}:{bad}", file=sys.stderr)
    print(f"{path}: {report}")
    if curated is not None:
        prior = "the [quality.curated] prior" if curated.score is None else curated.score
        print(f"  marked curated: they score {prior} until users react to them")
    elif report.imported:
        print("  note: imported trajectories carry no feedback: they score 0.30 (bronze) and "
              "are not selected for training until users' feedback, judges or a label lift "
              "them; import a curated file with --curated to train on it")
    if len(report.bad_lines) > args.max_bad_lines:
        return 1
    return 0


def export_file(args: argparse.Namespace) -> int:
    import json

    from hermes_fed.formats.importer import curated_trajectories
    from hermes_fed.formats.jsonl import format_record
    from tenant_node.config import load_node_config
    from tenant_node.ingest.runtime import open_existing_node_store

    store = open_existing_node_store(load_node_config(args.config))
    try:
        items = list(curated_trajectories(store.read(), args.selection))
    finally:
        store.close()
    lines = []
    for item in items:
        record = format_record(item.trajectory, args.format)
        record["tier"], record["weight"] = item.tier, item.weight
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    if args.out == "-":
        sys.stdout.writelines(lines)
    else:
        Path(args.out).write_text("".join(lines), encoding="utf-8")
    print(f"exported {len(items)} trajectories as {args.format}", file=sys.stderr)
    return 0


def _arms(text: str) -> list[Any]:
    from tenant_node.ingest.assignment import Arm

    arms = []
    for part in text.split(","):
        name, _, weight = part.partition("=")
        try:
            arms.append(Arm(name.strip(), float(weight) if weight else 1.0))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"--arms {part!r}: {exc}") from None
    return arms


def assign_user(args: argparse.Namespace) -> int:
    from tenant_node.config import load_node_config
    from tenant_node.ingest.runtime import open_node_store
    from tenant_node.ingest.service import record_assignment

    store = open_node_store(load_node_config(args.config))
    try:
        arm, point, result = record_assignment(store, args.test, args.user, args.arms)
    finally:
        store.close()
    print(f"{arm.name}\tbucket={point:.6f}\tposition={result.position}"
          f"{' (already recorded)' if result.duplicate else ''}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("import", help="import Hermes/ShareGPT or OpenAI chat JSONL "
                                             "(redacted; bad lines reported by number and "
                                             "skipped, exit status 1 when any)")
    p.add_argument("file", help="JSONL file")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--config", required=True, help="node TOML file")
    p.add_argument("--batch-size", type=int, default=100, help="lines per transaction")
    p.add_argument("--source", default="", help="source tag for stream ids (default: file stem)")
    p.add_argument("--curated", nargs="?", type=float, const=None, default=False,
                   metavar="SCORE",
                   help="the file is curated (you vouch for every row): each trajectory scores "
                        "SCORE in [-1, 1], or [quality.curated] prior (0.7, gold) without "
                        "one, until users react to it; without --curated imports score 0.30 "
                        "(bronze) and do not train")
    p.add_argument("--max-bad-lines", type=int, default=0,
                   help="exit 0 with at most this many bad lines (they are still reported and "
                        "skipped); default 0: any bad line makes the exit status 1")
    p.add_argument("--via-daemon", action="store_true",
                   help="send through the running node (its listen address and token from "
                        "the config) instead of opening the store")
    p.set_defaults(func=import_file)

    p = subparsers.add_parser("export", help="export the curated training set as JSONL")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--config", required=True, help="node TOML file")
    p.add_argument("--out", default="-", help="output file (default stdout)")
    p.add_argument("--selection", default=None, help="selection_id (default: the latest)")
    p.set_defaults(func=export_file)

    p = subparsers.add_parser("assign", help="assign a user to an A/B arm and record it")
    p.add_argument("--config", required=True, help="node TOML file")
    p.add_argument("--test", required=True, help="ab_test_id")
    p.add_argument("--user", required=True, help="user_ref")
    p.add_argument("--arms", required=True, type=_arms,
                   help="name=weight,... e.g. control=0.9,treatment=0.1")
    p.set_defaults(func=assign_user)
