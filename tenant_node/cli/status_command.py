"""``hermes-fed node status``: the node's log and its flywheel velocity (issue 4)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def status(args: argparse.Namespace) -> int:
    from hermes_fed.clock import current_clock
    from hermes_fed.events import from_micros
    from hermes_fed.quality import read_model as rm
    from hermes_fed.quality.pipeline import decide_training, quality_runner
    from tenant_node.config import load_node_config
    from tenant_node.gateway.plans import current_plan
    from tenant_node.ingest.runtime import open_existing_node_store

    config = load_node_config(args.config)
    store = open_existing_node_store(config)
    try:
        runner = quality_runner(store, config.quality)
        now = current_clock().now()  # the clock federated rounds are recorded by
        with runner.engine.connect() as conn:
            velocity = rm.flywheel_velocity(conn, now, args.window_days, config.quality)
            last = rm.last_training(conn)
        trigger = decide_training(store, now, config.quality)
        applied = current_plan(store)
        body: dict[str, Any] = {
            "tenant_id": config.tenant_id,
            "head": store.head(),
            "velocity": velocity.to_json(),
            "trigger": {"train": trigger.train, "rule": trigger.rule, "reason": trigger.reason},
            # the last training the trigger counts from: a local run or a federated round
            "last_training": None if last is None else {
                "run_id": last.run_id, "kind": last.kind,
                "at": from_micros(last.finished_at_us).isoformat()},
            # the plan the gateway routes by (it applies it once its adapters are loaded)
            "plan": None if applied is None else {
                **applied.plan.to_dict(), "plan_version": applied.version,
                "recorded_at": applied.recorded_at.isoformat()},
        }
    finally:
        store.close()
    if args.json:
        print(json.dumps(body, indent=2, default=str))
        return 0
    v = body["velocity"]
    print(f"tenant {body['tenant_id']}: log head {body['head']}")
    print(
        f"  last {v['window_days']:g} days: {v['trajectories']} scored trajectories "
        f"({v['trajectories_per_day']:.1f}/day), high-quality rate {v['high_quality_rate']:.0%}"
    )
    print("  tiers: " + ", ".join(f"{t} {n}" for t, n in v["tier_histogram"].items()))
    median = v["median_days_to_training"]
    print(
        f"  used in training: {v['used_in_training']} (median "
        f"{'-' if median is None else f'{median:.2f} days'} from recording to use)"
    )
    print(f"  preference pairs {v['preference_pairs']}, orphan feedback {v['orphans']}")
    last_run = body["last_training"]
    print("  last training: none" if last_run is None else
          f"  last training: {last_run['kind']} {last_run['run_id']} at {last_run['at']}")
    print(f"  train now? {'yes' if trigger.train else 'no'} ({trigger.rule}): {trigger.reason}")
    plan = body["plan"]
    if plan is None:
        print("  traffic plan: none applied (everyone is served the base model)")
    else:
        arms = ", ".join(f"{a['name']}={a['version']} {a['share'] * 100:g}%" for a in plan["arms"])
        print(f"  traffic plan: {plan['test_id']} ({arms}; production {plan['production']}), "
              f"applied {plan['recorded_at']}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "status",
        help="the node's log head and flywheel velocity "
        "(trajectories/day, high-quality rate, tiers, time to training)",
    )
    p.add_argument("--config", required=True, help="node TOML file")
    p.add_argument("--window-days", type=float, default=7.0, help="velocity window (default 7)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=status)
