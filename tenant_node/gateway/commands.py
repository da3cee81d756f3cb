"""``hermes-fed node gateway`` and ``hermes-fed node plan set|show``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hermes_fed.cli import daemon_logging, stop_on_signals


def gateway(args: argparse.Namespace) -> int:
    from tenant_node.config import load_node_config

    from .server import GatewayServer

    daemon_logging(args.verbose)
    server = GatewayServer(load_node_config(args.config))
    stop_on_signals(server.request_stop)
    server.run()
    return 0


def plan_set(args: argparse.Namespace) -> int:
    from hermes_fed.errors import ConfigError
    from hermes_fed.serving.plan import TrafficPlan, parse_arm
    from tenant_node.config import load_node_config
    from tenant_node.ingest.runtime import open_node_store

    from .plans import install_adapter, missing_adapters, record_plan

    config = load_node_config(args.config)
    if args.file:
        plan = TrafficPlan.from_dict(json.loads(Path(args.file).read_text()))
    else:
        if not args.arm or not args.test:
            raise ConfigError("give --test and one --arm NAME=VERSION:SHARE per arm "
                              "(or --file PLAN.json)")
        arms = tuple(parse_arm(spec) for spec in args.arm)
        plan = TrafficPlan(args.test, arms, args.production or arms[0].name)
    adapters_dir = config.resolved_adapters_dir
    for spec in args.adapter or ():
        version, eq, source = spec.partition("=")
        if not eq:
            raise ConfigError(f"--adapter must be VERSION=DIR, got {spec!r}")
        install_adapter(adapters_dir, version, Path(source))
    missing = missing_adapters(plan, adapters_dir)
    if missing:
        raise ConfigError(f"no adapter on disk for {missing!r} under {adapters_dir}: give "
                          "--adapter VERSION=DIR")
    store = open_node_store(config)
    try:
        version = record_plan(store, plan, actor="node.plan.set")
    finally:
        store.close()
    print(json.dumps({"plan": plan.to_dict(), "plan_version": version}, indent=2))
    return 0


def plan_show(args: argparse.Namespace) -> int:
    from tenant_node.config import load_node_config
    from tenant_node.ingest.runtime import open_node_store

    from .plans import current_plan

    store = open_node_store(load_node_config(args.config))
    try:
        applied = current_plan(store)
    finally:
        store.close()
    if applied is None:
        print("no traffic plan recorded; the gateway sends everyone to the base model",
              file=sys.stderr)
        return 1
    print(json.dumps({"plan": applied.plan.to_dict(), "plan_version": applied.version,
                      "recorded_at": applied.recorded_at.isoformat()}, indent=2))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "gateway", help="run the OpenAI-compatible gateway: routes by the traffic plan, "
                        "captures calls through the redaction gate, takes feedback")
    p.add_argument("--config", required=True, help="node TOML file (its [gateway] table)")
    p.set_defaults(func=gateway)

    plan = subparsers.add_parser("plan", help="set or show the node's traffic plan")
    sub = plan.add_subparsers(dest="plan_command", metavar="ACTION")
    s = sub.add_parser("set", help="record a traffic plan (TrafficPlanApplied) in the node's "
                                   "log; the gateway applies it once its adapters are loaded")
    s.add_argument("--config", required=True, help="node TOML file")
    s.add_argument("--test", help="the plan's test id (users are hashed with it: a new id "
                                  "re-draws everyone's arm)")
    s.add_argument("--arm", action="append", metavar="NAME=VERSION:SHARE",
                   help="an arm; repeat per arm; shares sum to 1; VERSION 'base' is the base "
                        "model")
    s.add_argument("--production", help="the arm of requests without a user (default the "
                                        "first arm)")
    s.add_argument("--adapter", action="append", metavar="VERSION=DIR",
                   help="copy a PEFT adapter directory in as VERSION (never replaces one)")
    s.add_argument("--file", help="the plan as JSON ({test_id, production, arms: [{name, "
                                  "version, share}]}) instead of --test/--arm")
    s.set_defaults(func=plan_set)
    w = sub.add_parser("show", help="print the current traffic plan as JSON")
    w.add_argument("--config", required=True, help="node TOML file")
    w.set_defaults(func=plan_show)
    plan.set_defaults(func=lambda _args: (plan.print_help(), 2)[1])
