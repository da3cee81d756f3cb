"""Factor probe: what a demo candidate writes, task by task, next to what was asked.

Loads a version from a demo's coordinator directory and solves ``--tasks`` clean held-out
tasks of the two large tenants greedily (in process, no gateway); prints one line per task:
tenant, family, correct, the request, the call's arguments, the expected arguments and the
final answer, then the correct count per family as JSON.

    .venv/bin/python bench/flywheel/probe_calls.py var/demo/coordinator --version v3-... --tasks 24
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("coordinator_dir", help="a demo's coordinator directory")
    p.add_argument("--version", default="", help="the version (default: the first trained)")
    p.add_argument("--tasks", type=int, default=24, help="tasks per tenant")
    p.add_argument("--rank", type=int, default=16, help="the version's LoRA rank")
    args = p.parse_args()

    from probe_details import load_version  # this script's folder

    from examples.flywheel import default_tenants
    from examples.flywheel.agent import AgentConfig, LocalAgent
    from examples.flywheel.base import shipped_base
    from hermes_fed.training.config import LoraTrainingConfig

    version, adapter = load_version(args.coordinator_dir, args.version)
    agent = LocalAgent(shipped_base(), adapter, LoraTrainingConfig(r=args.rank, alpha=2.0 * args.rank),
                       AgentConfig(temperature=0.0))
    by_family: dict[str, list[int]] = {}
    for tenant in default_tenants()[:2]:
        pairs = [(t, t.request) for t in tenant.draw_tasks(args.tasks, 99)]
        for (task, text), out in zip(pairs, agent.solve(pairs, 7), strict=True):
            cell = by_family.setdefault(task.task_type, [0, 0])
            cell[0] += int(out.correct)
            cell[1] += 1
            called = json.dumps(out.tool_call.arguments) if out.tool_call else None
            print(f"{tenant.tenant_id} {task.task_type} {out.correct} | {text} | {called} | "
                  f"expected {json.dumps(dict(task.arguments))} | {out.final_response[:60]!r}")
    print(json.dumps({"version": version, "correct_of_tasks_by_family": by_family}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
