"""``hermes-fed coordinator serve`` and ``hermes-fed round run``.

``coordinator serve --dir D`` starts a SuperLink on 127.0.0.1 (state, Flower home, logs,
registry and reports all under ``D``) and writes ``D/serve.json`` (port, pid, paths) for
``round run`` and ``node join`` to find it; it runs until SIGTERM/SIGINT and then stops the
SuperLink by PID. ``round run --dir D --rounds N --mode M --base-model B`` submits the
hermes-fed Flower app to that SuperLink, checks the run really completed (Flower's status
*and* the ServerApp's report), and prints the round report table.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from typing import Any

SERVE_FILE = "serve.json"


def _serve(args: argparse.Namespace) -> int:
    from coordinator.deployment import start_superlink, write_connection
    from coordinator.federation import CONNECTION
    from coordinator.rounds import CONFIG_ENV

    root = Path(args.dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "coordinator.json"
    if not config_path.exists():
        config_path.write_text("{}\n")
    link = start_superlink(root / "superlink", port=args.port,
                           env={CONFIG_ENV: str(config_path)})
    cli_home = root / "cli"
    write_connection(cli_home, CONNECTION, link.address)
    info = {"superlink": link.address, "pid": link.pid, "config": str(config_path),
            "cli_home": str(cli_home), "log": str(link.log_path)}
    (root / SERVE_FILE).write_text(json.dumps(info, indent=2) + "\n")
    print(f"SuperLink on {link.address} (pid {link.pid}); nodes join with "
          f"`hermes-fed node join --superlink {link.address} ...`", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            if not link.alive():
                print(f"SuperLink exited ({link.popen.returncode}); log {link.log_path}")
                return 1
    finally:
        link.stop()
        (root / SERVE_FILE).unlink(missing_ok=True)
    return 0


def _round_run(args: argparse.Namespace) -> int:
    from coordinator.federation import read_run_report, submit
    from coordinator.report import render_table
    from hermes_fed.errors import FederationError

    root = Path(args.dir).resolve()
    try:
        info = json.loads((root / SERVE_FILE).read_text())
    except OSError:
        raise FederationError(f"no coordinator is serving from {root}: start "
                              "`hermes-fed coordinator serve --dir` first") from None
    run_config: dict[str, Any] = {
        "coordinator-dir": str(root), "base-model": str(Path(args.base_model).resolve()),
        "num-server-rounds": args.rounds, "mode": args.mode, "min-nodes": args.min_nodes,
        "r": args.rank, "max-steps": args.max_steps, "lr": args.lr,
        "batch-size": args.batch_size, "clip-norm": args.clip_norm,
    }
    outcome = submit(Path(info["cli_home"]), Path(info["config"]), run_config,
                     timeout=args.timeout)
    body = read_run_report(root, outcome.run_id)
    reports = [_report_from_dict(r) for r in body["rounds"]]
    print(render_table(reports))
    print(f"run {outcome.run_id}: {outcome.status}; report "
          f"{root / 'reports' / f'run-{outcome.run_id}.json'}")
    return 0


def _report_from_dict(body: dict[str, Any]) -> Any:
    from coordinator.report import NodeRoundReport, RoundReport, Timing

    timing = {k: v for k, v in body["timing"].items() if k != "messaging"}
    return RoundReport(
        run_id=body["run_id"], round=body["round"], mode=body["mode"],
        parent_version=body["parent_version"], version=body["version"],
        nodes=tuple(NodeRoundReport(**n) for n in body["nodes"]),
        residual=body["residual"], fedavg_error=body["fedavg_error"],
        timing=Timing(**{k: v or 0.0 for k, v in timing.items()}),
        aggregation=body.get("aggregation", {}))


def register(parser: argparse.ArgumentParser) -> None:
    """The ``coordinator`` group."""
    sub = parser.add_subparsers(dest="coordinator_command", metavar="SUBCOMMAND")
    p = sub.add_parser("serve", help="run the Flower SuperLink of the coordinator on 127.0.0.1")
    p.add_argument("--dir", required=True, help="coordinator directory (state, registry, reports)")
    p.add_argument("--port", type=int, default=None, help="SuperLink port; default: a free one")
    p.set_defaults(func=_serve)


def register_round(parser: argparse.ArgumentParser) -> None:
    """The ``round`` group."""
    sub = parser.add_subparsers(dest="round_command", metavar="SUBCOMMAND")
    p = sub.add_parser("run", help="run federated LoRA rounds on the serving coordinator")
    p.add_argument("--dir", required=True, help="the directory `coordinator serve` uses")
    p.add_argument("--base-model", required=True, help="base-model dir shared with the nodes")
    p.add_argument("--rounds", type=int, default=1, help="rounds to run; default 1")
    p.add_argument("--mode", choices=("exact", "fedavg", "frozen-a"), default="frozen-a",
                   help="aggregation mode; default frozen-a")
    p.add_argument("--min-nodes", type=int, default=1, help="nodes needed; default 1")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank; default 8")
    p.add_argument("--max-steps", type=int, default=4, help="local steps per round; default 4")
    p.add_argument("--lr", type=float, default=1e-3, help="local learning rate; default 1e-3")
    p.add_argument("--batch-size", type=int, default=8, help="local batch size; default 8")
    p.add_argument("--clip-norm", type=float, default=0.0,
                   help="update-norm clipping bound; default 0 (none)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds for the whole run")
    p.set_defaults(func=_round_run)
