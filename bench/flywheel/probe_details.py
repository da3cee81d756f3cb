"""Factor probe: a demo candidate on clean requests vs the same requests as users write them.

The demo's users append contact details to their requests ("... Thanks, Amara Okafor.");
this loads a candidate from a demo's coordinator directory and solves the same tasks of the
two large tenants both ways, greedy and at the demo's temperature, in process (no gateway),
beside the base model. Prints JSON: correct and tool-error counts per cell.

    .venv/bin/python bench/flywheel/probe_details.py var/demo/coordinator [--tasks 120]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def load_version(coordinator_dir: str, version: str) -> tuple[str, Any]:
    """``(version, adapter)`` from a demo's coordinator registry; by default the first
    trained version (not the init)."""
    from coordinator.logs.registry import AdapterRegistry

    with AdapterRegistry.open_existing(Path(coordinator_dir)) as registry:
        trained = [v.version for v in registry.versions() if v.lineage.get("mode") != "init"]
        chosen = version or trained[0]
        return chosen, registry.load(chosen)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("coordinator_dir", help="a demo's coordinator directory")
    p.add_argument("--version", default="", help="the candidate (default: the first trained)")
    p.add_argument("--tasks", type=int, default=120, help="tasks per tenant")
    p.add_argument("--rank", type=int, default=16, help="the candidate's LoRA rank")
    p.add_argument("--temperatures", default="0.0,0.3", help="comma-separated")
    p.add_argument("--no-base", action="store_true", help="skip the base model's cells")
    args = p.parse_args()

    from examples.flywheel import default_tenants
    from examples.flywheel.agent import AgentConfig, LocalAgent
    from examples.flywheel.base import shipped_base
    from hermes_fed.training.config import LoraTrainingConfig

    version, adapter = load_version(args.coordinator_dir, args.version)
    lora = LoraTrainingConfig(r=args.rank, alpha=2.0 * args.rank)
    out: dict[str, Any] = {"version": version, "tasks": args.tasks, "cells": {}}
    for tenant in default_tenants()[:2]:
        tasks = tenant.draw_tasks(args.tasks, 99)
        rng = random.Random(1)
        turns = [tenant.user_turn(t.request, rng) for t in tasks]
        asks = {"clean": [(t, t.request) for t in tasks],
                "with_details": [(t, text) for t, (_, text, _) in zip(tasks, turns, strict=True)],
                # as a gateway that masks requests would send them: each planted value
                # replaced by its placeholder
                "with_placeholders": [(t, planted.masked(text))
                                      for t, (_, text, planted) in zip(tasks, turns, strict=True)]}
        models = (("candidate", adapter),) if args.no_base else (("base", None),
                                                                 ("candidate", adapter))
        for temperature in (float(x) for x in args.temperatures.split(",")):
            for name, state in models:
                agent = LocalAgent(shipped_base(), state, lora if state is not None else None,
                                   AgentConfig(temperature=temperature))
                for kind, pairs in asks.items():
                    solved = agent.solve(pairs, 7)
                    out["cells"][f"{tenant.tenant_id}/{name}/T{temperature}/{kind}"] = {
                        "correct": sum(o.correct for o in solved),
                        "tool_error": sum(o.tool_error for o in solved)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
