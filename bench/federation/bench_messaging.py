"""Pure Flower per-message cost on 127.0.0.1: a no-op ClientApp, subprocess vs process isolation.

Builds a throw-away Flower app whose ClientApp replies at once, starts a SuperLink and one
SuperNode (``--isolation subprocess``: a fresh ``flwr-clientapp`` per message; or
``--isolation process`` with ``tenant_node.flower.warm_clientapp``), and times N sequential
exchanges from the ServerApp (push, then pull every 0.1 s). What is left is Flower's
polling plus, in subprocess mode, process start-up.

    .venv/bin/python bench/federation/bench_messaging.py --exchanges 5

Prints JSON; no thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"
[project]
name = "noopapp"
version = "0.1.0"
description = "bench"
license = "Apache-2.0"
[tool.flwr.app]
publisher = "bench"
[tool.flwr.app.components]
serverapp = "noopapp.server:app"
clientapp = "noopapp.client:app"
[tool.flwr.app.config]
exchanges = 5
"""
CLIENT = """from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
app = ClientApp()
@app.query("status")
def status(msg: Message, context: Context) -> Message:
    return Message(RecordDict({"metrics": MetricRecord({"ok": 1})}), reply_to=msg)
"""
SERVER = """import json, time
from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp
app = ServerApp()
@app.main()
def main(grid: Grid, context: Context) -> None:
    while not list(grid.get_node_ids()):
        time.sleep(0.1)
    node = list(grid.get_node_ids())[0]
    times = []
    for _ in range(int(context.run_config["exchanges"])):
        t = time.monotonic()
        ids = list(grid.push_messages([Message(RecordDict(), dst_node_id=node,
                                               message_type="query.status")]))
        got = []
        while not got:
            got = list(grid.pull_messages(ids))
            if not got:
                time.sleep(0.1)
        times.append(time.monotonic() - t)
    print("EXCHANGES " + json.dumps(times), flush=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=5)
    args = parser.parse_args()

    from coordinator.deploy.local_federation import CONNECTION, LocalFederation, NodeSpec
    from coordinator.deploy.superlink import run_app

    out = {"machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-msg-") as tmp:
        app = Path(tmp) / "app"
        (app / "noopapp").mkdir(parents=True)
        (app / "pyproject.toml").write_text(PYPROJECT)
        (app / "noopapp" / "__init__.py").write_text("")
        (app / "noopapp" / "client.py").write_text(CLIENT)
        (app / "noopapp" / "server.py").write_text(SERVER)
        for isolation in ("subprocess", "process"):
            with LocalFederation(Path(tmp) / isolation, isolation=isolation) as fed:
                fed.add_node(NodeSpec("bench", "unused", "unused"))
                outcome = run_app(app, fed.cli_home, CONNECTION,
                                  run_config={"exchanges": args.exchanges})
                line = next(x for x in outcome.log.splitlines() if "EXCHANGES " in x)
                times = json.loads(line.split("EXCHANGES ", 1)[1])
                out["runs"].append({
                    "isolation": isolation, "exchange_s": times,
                    "median_s": statistics.median(times),
                    "median_after_first_s": statistics.median(times[1:] or times),
                    "flwr_run_wall_s": outcome.elapsed_s})
                print(json.dumps(out["runs"][-1]), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
