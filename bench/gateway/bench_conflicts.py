"""Placeholder collisions between the gateway's two writers, side by side.

A lone call is captured in the gateway itself, overlapping calls by its capture process,
so at moderate load a session's captures move between two writers of one log. Each caches
the session's placeholder numbers; a writer numbering from a stale view collides with the
other's rows and its whole group is redacted again (``event=placeholder_conflict`` in the
gateway's log). This bench drives conversations that bring a new e-mail address and phone
number on every turn (the worst case: every capture numbers something new) through each
gateway in turn, and counts the collisions in its log.

    .venv/bin/python bench/gateway/bench_conflicts.py --gateway old=/tmp/wt-old \\
        --gateway new=. --threads 2 --seconds 8

Prints one JSON document; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import bench.gateway.bench_gateway as gateway_bench  # noqa: E402
from bench.gateway.bench_gateway import Contender, throughput  # noqa: E402
from bench.gateway.bench_side_by_side import parse_gateway, start_gateway  # noqa: E402
from tests.integration.gateway.stack import TOKEN, metric, stub_upstream  # noqa: E402


def new_pii_text(conversation: int, turn: int) -> str:
    """A user turn with an address and a number no earlier turn of its session had."""
    return (f"Turn {turn}: my order {4711 + conversation} has not arrived; send the tracking "
            f"link to person{conversation}-turn{turn}@example.com or call +1 415 555 "
            f"{1000 + (conversation * 7 + turn) % 9000:04d}.")


def wait_capture_process(url: str, timeout_s: float = 120.0) -> None:
    """Until the gateway's capture process is ready (it loads after the gateway answers)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = json.loads(urllib.request.urlopen(url + "/health", timeout=10).read())
        if (health.get("capture_process") or {}).get("state") in ("ready", "off"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the capture process of {url} was not ready in {timeout_s} s")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", action="append", type=parse_gateway, required=True,
                        metavar="NAME=TREE[,key=value...]", help="a gateway to run (one or more)")
    parser.add_argument("--threads", type=int, default=2,
                        help="client threads (2: calls overlap some of the time) (2)")
    parser.add_argument("--seconds", type=float, default=8.0, help="per gateway (8)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)

    gateway_bench.user_text = new_pii_text  # every turn brings new values to number
    workdir = Path(tempfile.mkdtemp(prefix="bench-conflicts-"))
    stub = stub_upstream(workdir, 0.0).start()
    result: dict[str, Any] = {"bench": "gateway/bench_conflicts",
                              "config": {"threads": args.threads, "seconds": args.seconds},
                              "gateways": {}}
    try:
        for offset, (name, tree, settings) in enumerate(args.gateway):
            server = start_gateway(workdir / name, stub.url, tree, settings, "FULL")
            try:
                assert server.process is not None
                wait_capture_process(server.url)
                contender = Contender(name, server.url + "/v1", "hermes-fed", TOKEN,
                                      server.process.pid)
                run = throughput(contender, args.threads, args.seconds, offset * 10_000_000)
                exposition = urllib.request.urlopen(server.url + "/metrics",
                                                    timeout=10).read().decode()
                inline = metric(exposition, "hermes_gateway_capture_inline_total")
                in_process = metric(exposition, "hermes_gateway_capture_process_calls_total")
            finally:
                server.stop()
            result["gateways"][name] = {
                "tree": str(tree), "settings": settings, **run,
                "captured_inline": inline, "captured_by_capture_process": in_process,
                "placeholder_conflicts": server.log().count("event=placeholder_conflict"),
            }
    finally:
        stub.stop()
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
