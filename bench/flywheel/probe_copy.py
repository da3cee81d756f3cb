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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

from examples.flywheel.base import probe_copying


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True)
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps({"base": args.base, **probe_copying(args.base, args.n)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
