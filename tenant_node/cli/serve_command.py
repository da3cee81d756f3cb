"""``hermes-fed node serve --config node.toml``: run the ingest daemon until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

LOG_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def serve(args: argparse.Namespace) -> int:
    from tenant_node.config import load_node_config
    from tenant_node.ingest.runtime import NodeRuntime

    logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                        format=LOG_FORMAT, force=True)
    # presidio logs every recognizer it loads at INFO; the node reports what matters itself.
    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
    runtime = NodeRuntime(load_node_config(args.config))

    def on_signal(signum: int, _frame: Any) -> None:
        logging.getLogger(__name__).info("event=signal signal=%s", signal.Signals(signum).name)
        runtime.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
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
