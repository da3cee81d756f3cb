"""``hermes-fed node serve --config node.toml``: run the ingest daemon until SIGTERM."""

from __future__ import annotations

import argparse
from typing import Any

from hermes_fed.cli import daemon_logging, stop_on_signals


def serve(args: argparse.Namespace) -> int:
    from tenant_node.config import load_node_config
    from tenant_node.ingest.runtime import NodeRuntime

    daemon_logging(args.verbose)
    runtime = NodeRuntime(load_node_config(args.config))
    stop_on_signals(runtime.request_stop)
    try:
        runtime.start()
        runtime.wait()
    finally:
        runtime.stop()
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the tenant node daemon (gRPC ingest, metrics, projections)")
    parser.add_argument("--config", required=True, help="node TOML file")
    parser.set_defaults(func=serve)
