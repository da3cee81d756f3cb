"""Can a (pre-trained) base copy from the prompt? Three greedy probes on fresh generic data.

- ``echo``: a tool-free "Repeat after me: <span>" dialog; the reply must equal the span;
- ``call``: a generic tool-use request; the call must name the tool of the schema and copy
  every argument value (``call_exact``; ``call_name`` counts the tool name alone);
- ``final``: the gold call and tool result are given; the final answer must state the
  result.

None of this touches the task families: it measures what the base brings to the flywheel.
Prints JSON.

    .venv/bin/python bench/flywheel/probe_copy.py --base var/bench-flywheel/<base dir>
"""

from __future__ import annotations

import argparse
import json
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

from hermes_fed.sim.agent import AgentConfig, LocalAgent, ToolCall, parse_tool_call
from hermes_fed.sim.pretrain import echo_trajectory, generic_corpus


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True)
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    agent = LocalAgent(args.base, None, None, AgentConfig(temperature=0.0, max_call_tokens=80))
    rng = random.Random(4242)
    echoes = [echo_trajectory(rng, i) for i in range(args.n)]
    outs = agent.generate([agent._prompt(d["messages"][:2], []) for d in echoes], 48, 0)
    echo_ok = sum(o == d["final_response"] for d, o in zip(echoes, outs, strict=True))
    docs = list(generic_corpus(args.n, 999, 2, 0.0))
    outs = agent.generate([agent._prompt(d["messages"][:2], d["tools"]) for d in docs], 80, 0)
    exact = name = 0
    for d, o in zip(docs, outs, strict=True):
        call, gold = parse_tool_call(o), d["messages"][2]["tool_calls"][0]
        if isinstance(call, ToolCall):
            name += call.name == gold["name"]
            exact += call.name == gold["name"] and call.arguments == gold["arguments"]
    outs = agent.generate([agent._prompt(d["messages"][:4], d["tools"]) for d in docs], 40, 0)
    final = sum(str(json.loads(d["messages"][3]["content"])["result"]) in o
                for d, o in zip(docs, outs, strict=True))
    print(json.dumps({"base": args.base, "n": args.n, "echo_exact": echo_ok,
                      "call_exact": exact, "call_name": name, "final_states_result": final,
                      }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
