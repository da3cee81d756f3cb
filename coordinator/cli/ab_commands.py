"""``hermes-fed ab create|status|look|conclude``: cross-tenant A/B tests in the coordinator's log.

``--dir`` is the coordinator directory (``coordinator serve --dir``); the tests live in
its event log (``coordinator.db``). Looks happen after every federated round, or now with
``ab look`` (an ``ab-only`` Flower run: no training); the other commands create a test,
show what its looks recorded, and let an operator conclude it. Output is JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _print(body: Any) -> None:
    print(json.dumps(body, indent=2, default=str))


def _create(args: argparse.Namespace) -> int:
    from coordinator.logs.abtest import ABTestLog
    from coordinator.logs.registry import AdapterRegistry

    with AdapterRegistry.open(Path(args.dir)) as registry:
        spec = ABTestLog(registry.store).create(
            args.control, args.treatment, traffic_split=args.traffic_split,
            min_samples=args.min_samples, duration_days=args.duration_days, ab_test_id=args.id)
        _print(ABTestLog(registry.store).get(spec.ab_test_id).to_dict())
    return 0


def _status(args: argparse.Namespace) -> int:
    from coordinator.logs.abtest import ABTestLog
    from coordinator.logs.registry import AdapterRegistry

    with AdapterRegistry.open_existing(Path(args.dir)) as registry:
        log = ABTestLog(registry.store)
        if args.id:
            _print(log.get(args.id).to_dict())
        else:
            _print([t.to_dict() for t in log.all_tests()])
    return 0


def _conclude(args: argparse.Namespace) -> int:
    from coordinator.logs.abtest import ABTestLog
    from coordinator.logs.promotion import PromotionLog
    from coordinator.logs.registry import AdapterRegistry
    from hermes_fed.abtest import Verdict

    with AdapterRegistry.open_existing(Path(args.dir)) as registry:
        log = ABTestLog(registry.store)
        verdict = Verdict(args.verdict) if args.verdict else None
        concluded = log.conclude(args.id, verdict=verdict, reason=args.reason or "")
        spec = log.get(args.id).spec
        fact = PromotionLog(registry.store).on_conclusion(
            args.id, spec.treatment, str(concluded["decision"]),
            list(concluded["numbers"].get("reasons", [])))
        _print({"concluded": concluded, "rolled_back": None if fact is None else fact.version})
    return 0


def _look(args: argparse.Namespace) -> int:
    """Submit an ``ab-only`` run to the serving coordinator: one look, no training."""
    from coordinator.deploy.local_federation import read_run_report, submit
    from coordinator.logs.abtest import ABTestLog
    from coordinator.logs.registry import AdapterRegistry
    from hermes_fed.errors import FederationError

    root = Path(args.dir).resolve()
    try:
        info = json.loads((root / "serve.json").read_text())
    except OSError:
        raise FederationError(f"no coordinator is serving from {root}: start "
                              "`hermes-fed coordinator serve --dir` first") from None
    run_config: dict[str, str | int | float] = {
        "coordinator-dir": str(root), "base-model": "unused-by-ab-looks", "ab-only": 1,
        "rounds": args.looks, "min-nodes": args.min_nodes}
    outcome = submit(Path(info["cli_home"]), Path(info["config"]), run_config,
                     timeout=args.timeout)
    read_run_report(root, outcome.run_id)
    with AdapterRegistry.open(root) as registry:
        _print({"run_id": outcome.run_id,
                "tests": [t.to_dict() for t in ABTestLog(registry.store).all_tests()]})
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    """The ``ab`` group."""
    sub = parser.add_subparsers(dest="ab_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("create", help="record ABTestCreated: control vs treatment version")
    p.add_argument("--dir", required=True, help="coordinator directory")
    p.add_argument("--control", required=True, help="control version ('base' = no adapter)")
    p.add_argument("--treatment", required=True, help="treatment version (the candidate)")
    p.add_argument("--traffic-split", type=float, default=0.1,
                   help="treatment's share of the test's users; default 0.1")
    p.add_argument("--min-samples", type=int, default=1000,
                   help="units per arm over all tenants before a decision; default 1000")
    p.add_argument("--duration-days", type=int, default=14,
                   help="planned length; inconclusive at the end -> ROLLBACK; default 14")
    p.add_argument("--id", default=None, help="test id; default: a random ab-<hex>")
    p.set_defaults(func=_create)

    p = sub.add_parser("status", help="a test's (or every test's) looks and conclusion")
    p.add_argument("--dir", required=True, help="coordinator directory")
    p.add_argument("id", nargs="?", default=None, help="test id; default: all tests")
    p.set_defaults(func=_status)

    p = sub.add_parser("look", help="one look at every open test now (no training round)")
    p.add_argument("--dir", required=True, help="the directory `coordinator serve` uses")
    p.add_argument("--min-nodes", type=int, default=1, help="nodes to wait for; default 1")
    p.add_argument("--looks", type=int, default=1, help="looks in a row; default 1")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole run")
    p.set_defaults(func=_look)

    p = sub.add_parser("conclude", help="record ABTestConcluded (the last look's verdict)")
    p.add_argument("--dir", required=True, help="coordinator directory")
    p.add_argument("id", help="test id")
    p.add_argument("--verdict", choices=("SHIP", "ROLLBACK"), default=None,
                   help="override the last look's verdict (needs --reason)")
    p.add_argument("--reason", default="", help="why (recorded in the conclusion)")
    p.set_defaults(func=_conclude)
