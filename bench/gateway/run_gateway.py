"""Start ``hermes-fed node gateway`` for a bench harness that knows only an upstream and a port.

    .venv/bin/python bench/gateway/run_gateway.py --upstream http://127.0.0.1:8801 --port 8800

Writes a throw-away node (SQLite log, default redaction) in a temporary directory and runs
the gateway in front of ``--upstream`` on ``--port``, health at ``/health``; the model
``bench-model`` (or any name the stub answers) goes to the upstream as the base model;
agents send the bearer token printed on stderr (also ``BENCH_KEY_GATEWAY``'s default,
``gateway-token-0123456789``). So a harness that starts contenders by command (the LiteLLM
comparison, ``bench_litellm.py --contender-cmd 'gateway=.venv/bin/python
bench/gateway/run_gateway.py --upstream {upstream} --port {port}'``) can run it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="the upstream's base URL")
    parser.add_argument("--port", type=int, required=True, help="the gateway's port")
    parser.add_argument("--model", default="bench-model", help="the model name agents send")
    parser.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"),
                        help="SQLite durability of the capture (FULL)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a [gateway] setting, as TOML (capture_process=false)")
    parser.add_argument("--token", default=os.environ.get("BENCH_KEY_GATEWAY",
                                                           "gateway-token-0123456789"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-node-"))
    (workdir / "node.toml").write_text(
        f'tenant_id = "bench"\ntoken = "{args.token}"\nmetrics_port = 0\n'
        f'sqlite_synchronous = "{args.synchronous}"\n[gateway]\n'
        f'listen = "127.0.0.1:{args.port}"\nupstream_url = "{args.upstream}"\n'
        f'base_model = "{args.model}"\nmodel_name = "{args.model}"\n'
        + "".join(f"{setting}\n" for setting in args.set))
    print(f"gateway node in {workdir}; bearer token {args.token}", file=sys.stderr)
    from hermes_fed.cli import main as cli

    sys.exit(cli(["node", "gateway", "--config", str(workdir / "node.toml")]))


if __name__ == "__main__":
    main()
