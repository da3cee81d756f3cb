"""``hermes-fed model promote|rollback|history`` (plus ``init-tiny``/``train``/... of
``hermes_fed.training.commands``, which this group keeps).

Promotion facts go to the coordinator's log (``coordinator.logs.promotion``): a version moves
``candidate -> canary -> ab -> production`` one stage per ``promote``, with the traffic
fractions given (default 1% and 9%); production needs a SHIP A/B conclusion unless
``--force``. Output is JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _print(body: Any) -> None:
    print(json.dumps(body, indent=2, default=str))


def _fact_dict(fact: Any) -> dict[str, Any]:
    from hermes_fed.registry.promotion import fact_to_event

    kind, data = fact_to_event(fact)
    return {"type": kind, **data}


def _promote(args: argparse.Namespace) -> int:
    from coordinator.logs.abtest import ABTestLog
    from coordinator.logs.promotion import PromotionLog
    from coordinator.logs.registry import AdapterRegistry
    from hermes_fed.registry.promotion import PromotionConfig

    with AdapterRegistry.open_existing(Path(args.dir)) as registry:
        registry.get(args.version)  # only published adapters are promoted
        log = PromotionLog(registry.store, PromotionConfig(args.canary_fraction, args.ab_fraction))
        fact = log.promote(args.version, reason=args.reason, force=args.force,
                           shipped=ABTestLog(registry.store).shipped_versions())
        _print({**_fact_dict(fact), "traffic": _traffic(log)})
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from coordinator.logs.promotion import PromotionLog
    from coordinator.logs.registry import AdapterRegistry

    with AdapterRegistry.open_existing(Path(args.dir)) as registry:
        log = PromotionLog(registry.store)
        fact = log.rollback(args.version, args.reason)
        _print({**_fact_dict(fact), "traffic": _traffic(log)})
    return 0


def _traffic(log: Any) -> dict[str, float]:
    return {str(k) if k is not None else "base": v for k, v in log.state().traffic().items()}


def _history(args: argparse.Namespace) -> int:
    from coordinator.logs.promotion import PromotionLog
    from coordinator.logs.registry import AdapterRegistry

    with AdapterRegistry.open_existing(Path(args.dir)) as registry:
        log = PromotionLog(registry.store)
        state = log.state()
        _print({"history": [h.to_dict() for h in log.history(args.version)],
                "stages": {v.version: v.stage.value for v in state.versions},
                "traffic": _traffic(log)})
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    """The ``model`` group: the training commands plus promote/rollback/history."""
    from hermes_fed.training.commands import register as register_training

    register_training(parser)
    sub = next(a for a in parser._subparsers._group_actions  # type: ignore[union-attr]
               if isinstance(a, argparse._SubParsersAction))
    from hermes_fed.serving.commands import register as register_serving

    register_serving(sub)  # model serve: base + LoRA adapters by name, OpenAI API

    p = sub.add_parser("promote", help="move a published version one promotion stage on")
    p.add_argument("--dir", required=True, help="coordinator directory")
    p.add_argument("version", help="adapter version (from the registry)")
    p.add_argument("--reason", default="", help="why (recorded in ModelPromoted)")
    p.add_argument("--force", action="store_true",
                   help="promote to production without a SHIP A/B conclusion")
    p.add_argument("--canary-fraction", type=float, default=0.01,
                   help="traffic share of the canary stage; default 0.01")
    p.add_argument("--ab-fraction", type=float, default=0.09,
                   help="traffic share of the ab stage; default 0.09")
    p.set_defaults(func=_promote)

    p = sub.add_parser("rollback", help="withdraw a version; traffic returns to production")
    p.add_argument("--dir", required=True, help="coordinator directory")
    p.add_argument("version", help="adapter version")
    p.add_argument("--reason", required=True, help="why (recorded in ModelRolledBack)")
    p.set_defaults(func=_rollback)

    p = sub.add_parser("history", help="promotion facts, current stages and traffic")
    p.add_argument("--dir", required=True, help="coordinator directory")
    p.add_argument("version", nargs="?", default=None, help="only this version's facts")
    p.set_defaults(func=_history)
