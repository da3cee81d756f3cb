"""``hermes-fed coordinator serve`` and ``hermes-fed round run``.

``coordinator serve --dir D`` starts a SuperLink on 127.0.0.1 (state, Flower home, logs,
registry and reports all under ``D``) and writes ``D/serve.json`` (port, pid, paths) for
``round run`` and ``node join`` to find it; it runs until SIGTERM/SIGINT and then stops the
SuperLink by PID. ``round run --dir D --rounds N --mode M --base-model B`` submits the
hermes-fed Flower app to that SuperLink, checks the run really completed (Flower's status
*and* the ServerApp's report), and prints the round report table.

Privacy (issue 8): ``coordinator serve --certs C [--node-auth]`` serves TLS from a
``hermes-fed certs init C`` directory and, with ``--node-auth``, accepts only SuperNodes
whose key was added by ``coordinator register-node --dir D KEY.pub``. ``round run --dp
server|client --dp-clip C --dp-noise-multiplier z --dp-delta d --dp-epsilon-budget E
[--secagg]`` runs privacy rounds through the same app (the strategy changes, not the app).
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import Any

from hermes_fed.cli import stop_on_signals

SERVE_FILE = "serve.json"


def _serve(args: argparse.Namespace) -> int:
    from coordinator.deploy.local_federation import CONNECTION
    from coordinator.deploy.superlink import start_superlink, write_connection
    from coordinator.rounds.config import CONFIG_ENV

    root = Path(args.dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "coordinator.json"
    if not config_path.exists():
        config_path.write_text("{}\n")
    certs = Path(args.certs).resolve() if args.certs else None
    link = start_superlink(root / "superlink", port=args.port,
                           env={CONFIG_ENV: str(config_path)}, certs=certs,
                           node_auth=args.node_auth, poll_s=args.poll_interval)
    cli_home = root / "cli"
    write_connection(cli_home, CONNECTION, link.address, certs=certs)
    info = {"superlink": link.address, "pid": link.pid, "config": str(config_path),
            "cli_home": str(cli_home), "log": str(link.log_path),
            "certs": str(certs) if certs else None, "node_auth": bool(args.node_auth)}
    (root / SERVE_FILE).write_text(json.dumps(info, indent=2) + "\n")
    tls = (" --ca <their copy of ca.pem>" if certs else "") + (
        " --auth-key <their node.key>" if args.node_auth else "")
    print(f"SuperLink on {link.address} (pid {link.pid}); nodes join with "
          f"`hermes-fed node join --superlink {link.address}{tls} ...`", flush=True)
    stop = threading.Event()
    stop_on_signals(stop.set)
    try:
        while not stop.wait(1.0):
            if not link.alive():
                print(f"SuperLink exited ({link.popen.returncode}); log {link.log_path}")
                return 1
    finally:
        link.stop()
        (root / SERVE_FILE).unlink(missing_ok=True)
    return 0


def _serving(root: Path) -> dict[str, Any]:
    from hermes_fed.errors import FederationError

    try:
        info: dict[str, Any] = json.loads((root / SERVE_FILE).read_text())
    except OSError:
        raise FederationError(f"no coordinator is serving from {root}: start "
                              "`hermes-fed coordinator serve --dir` first") from None
    return info


def _register_node(args: argparse.Namespace) -> int:
    from coordinator.deploy.local_federation import CONNECTION
    from coordinator.deploy.superlink import register_supernode
    from hermes_fed.errors import FederationError
    from hermes_fed.federation.node_keys import check_public_key

    key = check_public_key(Path(args.key).resolve())  # never ship a private key by mistake
    info = _serving(Path(args.dir).resolve())
    if not info.get("node_auth"):
        raise FederationError("this coordinator runs without --node-auth: every node may "
                              "connect; restart `coordinator serve` with --certs and --node-auth")
    node_id = register_supernode(Path(info["cli_home"]), CONNECTION, key)
    print(f"registered SuperNode {node_id} (key {args.key}); the node may join now")
    return 0


_ROUNDS_FLAGS = ("rounds", "mode", "min_nodes", "clip_norm")
_PRIVACY_FLAGS = ("dp", "dp_clip", "dp_noise_multiplier", "dp_delta", "dp_epsilon_budget",
                  "secagg", "secagg_shares", "secagg_threshold", "secagg_clipping_range")


def round_run_config(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The run config of ``round run``'s flags, checked here before anything starts."""
    from dataclasses import fields

    from coordinator.rounds.config import RoundsConfig
    from coordinator.rounds.dp import PrivacySettings
    from hermes_fed.cli import config_values
    from hermes_fed.federation.settings import RoundSettings, wire_key

    names = (*_ROUNDS_FLAGS, *(f.name for f in fields(RoundSettings)), *_PRIVACY_FLAGS)
    run_config: dict[str, Any] = {
        "coordinator-dir": str(root), "base-model": str(Path(args.base_model).resolve()),
        **{wire_key(k): v for k, v in config_values(args, names).items()}}
    cfg = RoundsConfig.from_run_config(run_config, env={})
    PrivacySettings.from_run_config(run_config, env={}).check_round_setup(cfg.mode,
                                                                         cfg.min_nodes)
    return run_config


def _round_run(args: argparse.Namespace) -> int:
    from coordinator.deploy.local_federation import read_run_report, submit
    from coordinator.rounds.dp import render_privacy
    from coordinator.rounds.report import render_table

    root = Path(args.dir).resolve()
    run_config = round_run_config(args, root)
    info = _serving(root)
    outcome = submit(Path(info["cli_home"]), Path(info["config"]), run_config,
                     timeout=args.timeout)
    body = read_run_report(root, outcome.run_id)
    reports = [_report_from_dict(r) for r in body["rounds"]]
    print(render_table(reports))
    for r in body["rounds"]:
        if r.get("privacy"):
            print(render_privacy(r["round"], r["privacy"]))
    print(f"run {outcome.run_id}: {outcome.status}; report "
          f"{root / 'reports' / f'run-{outcome.run_id}.json'}")
    return 0


def _versions(args: argparse.Namespace) -> int:
    from coordinator.logs.registry import AdapterRegistry
    from hermes_fed.errors import FederationError

    with AdapterRegistry.open_existing(Path(args.dir).resolve()) as registry:
        versions = registry.versions()
    if args.latest:  # for scripts: VERSION=$(hermes-fed coordinator versions --latest ...)
        if not versions:
            raise FederationError("the registry holds no version yet: run a round first")
        print(versions[-1].version)
        return 0
    if args.json:
        print(json.dumps([v.to_dict() for v in versions], indent=2))
        return 0
    for v in versions:
        lin = v.lineage
        print(f"{v.version:<20} parent={v.parent or '-':<20} round={lin.get('round')} "
              f"mode={lin.get('mode')} nodes={len(lin.get('participating_nodes', []))} "
              f"residual={lin.get('residual')}")
    return 0


def _report_from_dict(body: dict[str, Any]) -> Any:
    from coordinator.rounds.report import NodeRoundReport, RoundReport, Timing

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
    from hermes_fed.federation.supernode_launcher import poll_seconds_arg

    sub = parser.add_subparsers(dest="coordinator_command", metavar="SUBCOMMAND")
    p = sub.add_parser("serve", help="run the Flower SuperLink of the coordinator on 127.0.0.1")
    p.add_argument("--dir", required=True, help="coordinator directory (state, registry, reports)")
    p.add_argument("--port", type=int, default=None, help="SuperLink port; default: a free one")
    p.add_argument("--certs", default=None,
                   help="serve TLS from this `hermes-fed certs init` directory; default none")
    p.add_argument("--node-auth", action="store_true",
                   help="accept only SuperNodes registered with `coordinator register-node`")
    p.add_argument("--poll-interval", type=poll_seconds_arg, default=None,
                   help="seconds between the SuperLink's polls for the next ServerApp to "
                        "start (Flower's FLWR_SUPEREXEC_TASK_POLL_INTERVAL), 0.01-3; default "
                        "Flower's 1 s")
    p.set_defaults(func=_serve)
    p = sub.add_parser("versions", help="list the registry's adapter versions and lineage")
    p.add_argument("--dir", required=True, help="coordinator directory")
    p.add_argument("--json", action="store_true", help="full lineage as JSON")
    p.add_argument("--latest", action="store_true",
                   help="print only the latest version id (for scripts)")
    p.set_defaults(func=_versions)
    p = sub.add_parser("register-node", help="allow a SuperNode's ECDSA public key (node auth)")
    p.add_argument("key", help="the node's public key (node.pub, made on the node by "
                               "`hermes-fed node keygen`)")
    p.add_argument("--dir", required=True, help="the directory `coordinator serve` uses")
    p.set_defaults(func=_register_node)
    from coordinator.cli.autopilot_commands import register as register_autopilot

    register_autopilot(sub)


def register_round(parser: argparse.ArgumentParser) -> None:
    """The ``round`` group: every flag comes from a config dataclass (one name each)."""
    from dataclasses import fields

    from coordinator.rounds.config import RoundsConfig
    from coordinator.rounds.dp import PrivacySettings
    from hermes_fed.cli import add_config_flags
    from hermes_fed.federation.round_spec import DP_MODES
    from hermes_fed.federation.settings import AGGREGATION_MODES, RoundSettings
    from hermes_fed.training.learning_rate import LR_SCHEDULES

    sub = parser.add_subparsers(dest="round_command", metavar="SUBCOMMAND")
    p = sub.add_parser("run", help="run federated LoRA rounds on the serving coordinator")
    p.add_argument("--dir", required=True, help="the directory `coordinator serve` uses")
    p.add_argument("--base-model", required=True, help="base-model dir shared with the nodes")
    add_config_flags(p, RoundsConfig, _ROUNDS_FLAGS, {"mode": AGGREGATION_MODES})
    add_config_flags(p, RoundSettings, [f.name for f in fields(RoundSettings)],
                     {"lr_schedule": LR_SCHEDULES})
    add_config_flags(p, PrivacySettings, _PRIVACY_FLAGS, {"dp": DP_MODES})
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds for the whole run (default 3600)")
    p.set_defaults(func=_round_run)
