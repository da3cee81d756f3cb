"""Two or more gateways side by side: the same calls, interleaved, in front of one stub.

Compares code trees (a git worktree of another commit) or settings of the ``[gateway]``
table in one run, so that a machine whose speed drifts between runs (this one: ~25%) hits
every contender alike. Each round sends the same agent call (the gateway bench's
three-turn conversations) to the stub directly and to every gateway, starting with the
next one each round; the first gateway named is the baseline of the paired differences.

    .venv/bin/python bench/gateway/bench_side_by_side.py \\
        --gateway old=/tmp/wt-old --gateway new=. --rounds 1500
    .venv/bin/python bench/gateway/bench_side_by_side.py --upstream-delay-ms 20 \\
        --gateway off=.,redact_ahead=false --gateway on=.,redact_ahead=true
    .venv/bin/python bench/gateway/bench_side_by_side.py \\
        --gateway full=. --gateway normal=.,sqlite_synchronous=NORMAL
    .venv/bin/python bench/gateway/bench_side_by_side.py --gateway sqlite=. \\
        --gateway pg=.,store_url=postgresql+psycopg://postgres@127.0.0.1:5432/test,store_schema=bench_pg

(a PostgreSQL schema is created on first use and left there: drop it after, or name a new
one each run).

Each gateway runs ``python -m hermes_fed.cli node gateway`` with its working directory
*and* ``PYTHONPATH`` in its tree: ``-m`` puts the working directory first on ``sys.path``,
so a process started elsewhere with only ``PYTHONPATH`` pointing at a tree runs the
working directory's code instead. Prints one JSON document; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.gateway.bench_gateway import (  # noqa: E402
    Client,
    Contender,
    conversation_call,
    process_cpu_s,
)
from tests.integration.gateway.stack import TOKEN, Node, Server, _env, stub_upstream  # noqa: E402


def parse_gateway(spec: str) -> tuple[str, Path, dict[str, Any]]:
    """``NAME=TREE[,key=value...]`` -> (name, tree, [gateway] settings; values as JSON)."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME=TREE[,key=value...], got {spec!r}")
    tree, *options = rest.split(",")
    settings: dict[str, Any] = {}
    for option in options:
        key, eq, value = option.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"expected key=value, got {option!r}")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    path = Path(tree).resolve()
    if not (path / "hermes_fed" / "cli.py").is_file():
        raise argparse.ArgumentTypeError(f"{tree}: not a hermes-fed tree")
    return name, path, settings


#: Node settings (not ``[gateway]`` ones) a gateway's spec may name.
NODE_KEYS = ("sqlite_synchronous", "store_url", "store_schema")


def start_gateway(workdir: Path, upstream: str, tree: Path, settings: dict[str, Any],
                  synchronous: str) -> Server:
    """``settings`` are ``[gateway]`` keys, but the node's :data:`NODE_KEYS`: its log
    (``store_url``, a PostgreSQL ``store_schema``) and ``sqlite_synchronous``, which
    overrides ``--synchronous`` for this gateway."""
    settings = dict(settings)
    top = {"sqlite_synchronous": settings.pop("sqlite_synchronous", synchronous)}
    top.update({key: settings.pop(key) for key in NODE_KEYS[1:] if key in settings})
    node = Node(workdir, upstream, top=top, **settings)
    server = node.gateway()
    server.env = dict(_env(), PYTHONPATH=str(tree))
    old_cwd = os.getcwd()
    os.chdir(tree)
    try:
        server.start()
    finally:
        os.chdir(old_cwd)
    return server


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", action="append", type=parse_gateway, required=True,
                        metavar="NAME=TREE[,key=value...]",
                        help="a gateway to compare (two or more; the first is the baseline)")
    parser.add_argument("--rounds", type=int, default=1000, help="measured rounds (1000)")
    parser.add_argument("--warmup", type=int, default=60, help="warm-up rounds (60)")
    parser.add_argument("--stream", action="store_true",
                        help="streamed calls, timed to [DONE] (default: non-streaming)")
    parser.add_argument("--upstream-delay-ms", type=float, default=0.0,
                        help="the stub waits this long before every answer (0)")
    parser.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"),
                        help="the gateways' sqlite_synchronous (FULL), unless a gateway's own "
                             "settings name one")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if len(args.gateway) < 2 or len({g[0] for g in args.gateway}) != len(args.gateway):
        parser.error("name two or more gateways, each once")

    workdir = Path(tempfile.mkdtemp(prefix="bench-side-by-side-"))
    stub = stub_upstream(workdir, args.upstream_delay_ms).start()
    servers = [stub]
    try:
        contenders = [Contender("direct", stub.url + "/v1", "bench-model")]
        for name, tree, settings in args.gateway:
            server = start_gateway(workdir / name, stub.url, tree, settings, args.synchronous)
            servers.append(server)
            assert server.process is not None
            contenders.append(Contender(name, server.url + "/v1", "hermes-fed", TOKEN,
                                        server.process.pid))
        clients = [Client(c) for c in contenders]
        samples: dict[str, list[float]] = {c.name: [] for c in contenders}
        cpu_before: dict[str, float | None] = {}
        for index in range(args.warmup + args.rounds):
            if index == args.warmup:
                cpu_before = {c.name: process_cpu_s(c.pid) for c in contenders}
            conversation, turn = divmod(index, 3)
            start = index % len(clients)
            for client in clients[start:] + clients[:start]:
                body = conversation_call(conversation, turn, client.contender.model)
                elapsed = client.stream(body)[1] if args.stream else client.complete(body)
                if index >= args.warmup:
                    samples[client.contender.name].append(elapsed)
        for client in clients:
            client.close()
        direct = np.asarray(samples["direct"])
        baseline = np.asarray(samples[args.gateway[0][0]])
        out: dict[str, Any] = {}
        for contender in contenders[1:]:
            values = np.asarray(samples[contender.name])
            cpu_after = process_cpu_s(contender.pid)
            before = cpu_before.get(contender.name)
            out[contender.name] = {
                "tree": str(next(t for n, t, _ in args.gateway if n == contender.name)),
                "settings": next(s for n, _, s in args.gateway if n == contender.name),
                "added_p50_ms": float(np.median(values) - np.median(direct)) * 1e3,
                "added_p90_ms": float(np.percentile(values, 90)
                                      - np.percentile(direct, 90)) * 1e3,
                "added_p99_ms": float(np.percentile(values, 99)
                                      - np.percentile(direct, 99)) * 1e3,
                "max_ms": float(values.max()) * 1e3,
                "paired_median_added_ms": float(np.median(values - direct)) * 1e3,
                "paired_median_vs_baseline_ms": float(np.median(values - baseline)) * 1e3,
                "gateway_cpu_ms_per_call": None if before is None or cpu_after is None
                else (cpu_after - before) / args.rounds * 1e3,
            }
    finally:
        for server in servers:
            server.stop()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    result = {"bench": "gateway/bench_side_by_side",
              "config": {k: v for k, v in vars(args).items() if k not in ("out", "gateway")},
              "direct_p50_ms": float(np.median(direct)) * 1e3,
              "baseline": args.gateway[0][0], "gateways": out}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
