"""``hermes-fed coordinator autopilot`` and ``hermes-fed coordinator status``.

``coordinator autopilot --dir D [--config autopilot.toml] [--once]`` turns the wheel over
the coordinator serving from ``D`` (``coordinator serve --dir D``): every
``cadence_seconds`` it steps until there is nothing to do (``--once``: one step, then
exit; ``--until-idle``: one beat -- steps until there is nothing to do -- then exit, for
a scheduler that owns the cadence, such as cron or the demo's simulated days). SIGTERM or
SIGINT stop it between steps; a ``kill -9`` at any point is resumed from the log by the
next start. Settings: the ``[autopilot]`` table, then the flags.

``coordinator status [--dir D] [--json]`` reads the log only: the cycle's phase, the
plan (wanted, applied, per tenant), each tenant's readiness by name, and the latest
decisions with their reasons.
"""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

_SKIP = frozenset({"webhook_url", "base_model", "mode", "round_config"})


def _config(args: argparse.Namespace) -> Any:
    from coordinator.autopilot.config import AutopilotConfig, load_config
    from hermes_fed.cli import config_values

    names = [f.name for f in fields(AutopilotConfig) if f.name not in _SKIP]
    given = {k: v for k, v in config_values(args, names).items() if v is not None}
    for name in ("webhook_url", "base_model"):
        if getattr(args, name, None):
            given[name] = getattr(args, name)
    return load_config(args.config, given)


def _autopilot(args: argparse.Namespace) -> int:
    import logging

    from coordinator.autopilot.flower_federation import ServingFederation
    from coordinator.autopilot.notify import AutopilotMetrics
    from coordinator.autopilot.runner import Autopilot
    from coordinator.logs.registry import AdapterRegistry
    from hermes_fed.cli import daemon_logging, stop_on_signals
    from hermes_fed.clock import current_clock
    from hermes_fed.errors import ConfigError

    config = _config(args)
    if not config.base_model:
        raise ConfigError("[autopilot] base_model is required by `coordinator autopilot` "
                          "(the base-model dir the rounds train on; --base-model or the "
                          "[autopilot] table)")
    root = Path(args.dir).resolve()
    daemon_logging(max(args.verbose, 1))
    metrics = AutopilotMetrics()
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr="127.0.0.1", registry=metrics.registry)
    with AdapterRegistry.open(root) as registry:
        autopilot = Autopilot(registry, ServingFederation(root, config), config,
                              current_clock())
        if args.once or args.until_idle:
            lines = autopilot.run_until_idle() if args.until_idle else [autopilot.step()]
            for line in lines:
                print(line, flush=True)
            metrics.update(autopilot.state())
            autopilot.notifier.join()
            return 1 if args.until_idle and autopilot.failed else 0
        stop = threading.Event()
        stop_on_signals(stop.set)
        log = logging.getLogger("coordinator.autopilot")
        log.info("event=start dir=%s cadence_s=%g", root, config.cadence_seconds)
        while not stop.is_set():
            from hermes_fed.errors import HermesFedError

            try:
                for line in autopilot.run_until_idle():
                    metrics.steps.inc()
                    log.info("event=step %s", json.dumps(line))
            except HermesFedError as exc:
                log.error("event=step status=failed error=%s: %s", type(exc).__name__, exc)
            metrics.update(autopilot.state())
            stop.wait(config.cadence_seconds)
        log.info("event=stop")
        autopilot.notifier.join()
    return 0


def status_body(root: Path) -> dict[str, Any]:
    """What ``coordinator status --json`` prints (tenants by name, never a node id)."""
    from coordinator.autopilot.decide import desired_plan
    from coordinator.autopilot.state import FOLDED_TYPES, fold
    from coordinator.logs.registry import AdapterRegistry

    with AdapterRegistry.open_existing(root) as registry:
        state = fold(registry.store.read(types=FOLDED_TYPES))
    pending = state.pending
    return {
        "dir": str(root), "cycle": state.cycle, "phase": state.phase.value,
        "candidate": state.candidate, "ab_test_id": state.ab_test_id,
        "production": state.registry.production,
        "pending": None if pending is None else {
            "step": pending.step, "action": pending.action.value, "reason": pending.reason,
            "since": pending.at.isoformat()},
        "plan": {"wanted": desired_plan(state.registry).to_dict(),
                 "applied": dict(state.plan_applied) if state.plan_applied else None,
                 "tenants": dict(state.node_plans),
                 "not_acknowledged": list(state.deploy_failed)},
        "readiness": {t: dict(r) for t, r in state.readiness.items()},
        "unanswered": list(state.unanswered),
        "cycles_ended": dict(state.ended),
        "decisions": [n.to_dict() for n in reversed(state.recent)],
        "cycles": [dict(c) for c in state.cycles],
    }


def _status(args: argparse.Namespace) -> int:
    body = status_body(Path(args.dir).resolve())
    if args.json:
        print(json.dumps(body, indent=2, default=str))
        return 0
    applied = body["plan"]["applied"]
    print(f"cycle {body['cycle']}: {body['phase']}"
          + (f" (candidate {body['candidate']})" if body["candidate"] else "")
          + f"; production {body['production'] or 'base'}")
    if body["pending"]:
        p = body["pending"]
        print(f"pending: step {p['step']} {p['action']} since {p['since']} ({p['reason']})")
    print(f"plan wanted {body['plan']['wanted']['test_id']}; applied everywhere: "
          f"{applied['test_id'] if applied else 'none'}")
    for tenant, plan in sorted(body["plan"]["tenants"].items()):
        late = " (not acknowledged)" if tenant in body["plan"]["not_acknowledged"] else ""
        print(f"  {tenant:<20} applies {plan}{late}")
    print("readiness:")
    for tenant, r in sorted(body["readiness"].items()):
        print(f"  {tenant:<20} {'train' if r.get('train') else 'wait':<6} rule={r.get('rule')}"
              f" new_scored={r.get('new_scored')} hq_rate={r.get('high_quality_rate')}")
    for missing in body["unanswered"]:
        print(f"  {missing} (no answer)")
    print("latest decisions:")
    for d in body["decisions"][:10]:
        print(f"  {d['at']} cycle {d['cycle']} {d['kind']:<11} {d['what']:<13} {d['reason']}")
    return 0


def register(sub: Any) -> None:
    """Add ``autopilot`` and ``status`` to the ``coordinator`` group's subparsers."""
    from coordinator.autopilot.config import AutopilotConfig
    from hermes_fed.cli import add_config_flags

    p = sub.add_parser("autopilot", help="turn the wheel: readiness, rounds, looks, canary, "
                                         "A/B, promotion and delivery, by itself")
    p.add_argument("--dir", required=True, help="the directory `coordinator serve` uses")
    p.add_argument("--config", default=None,
                   help="TOML file with an [autopilot] table (flags override it)")
    once = p.add_mutually_exclusive_group()
    once.add_argument("--once", action="store_true", help="do one step and exit")
    once.add_argument("--until-idle", action="store_true",
                      help="one beat: step until the autopilot waits (or a step fails, exit "
                           "1), print each step, exit")
    p.add_argument("--metrics-port", type=int, default=0,
                   help="serve Prometheus metrics on 127.0.0.1:PORT; default off")
    p.add_argument("--webhook-url", default="", help="POST promotions and rollbacks here")
    p.add_argument("--base-model", default="", help="base-model dir the rounds train on")
    names = [f.name for f in fields(AutopilotConfig) if f.name not in _SKIP]
    # None defaults: a flag the operator did not give leaves the file's value alone
    add_config_flags(p, AutopilotConfig, names, defaults=dict.fromkeys(names))
    defaults = AutopilotConfig().to_dict()
    for action in p._actions:  # say the real default, not the None that marks "not given"
        name = action.dest
        if name in defaults and action.help:
            action.help = action.help.replace("(default None)", f"(default {defaults[name]})")
    p.set_defaults(func=_autopilot)
    p = sub.add_parser("status", help="the autopilot's cycle, plan, readiness and decisions")
    p.add_argument("--dir", default=".", help="coordinator directory; default: here")
    p.add_argument("--json", action="store_true", help="the whole status as JSON")
    p.set_defaults(func=_status)
