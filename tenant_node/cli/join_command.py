"""``hermes-fed node join``: run this node's Flower SuperNode against the coordinator.

Starts ``flower-supernode`` on 127.0.0.1 with ``--node-config 'tenant-id=... store=...
base-model=... [keyring=...] [k-min=...]'`` (read by ``tenant_node.flower.client_app``), waits for
its ``/health``, and runs until SIGTERM/SIGINT, then stops it by PID. The node's identity
and store come from ``--config node.toml`` (the same file ``node serve`` reads) or from
``--tenant-id``/``--store``. With ``--isolation process`` it also runs the long-lived
ClientApp worker (``tenant_node.flower.warm_clientapp``) beside the SuperNode.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any


def node_config_from_args(args: argparse.Namespace) -> dict[str, str | int | float]:
    """The ``--node-config`` of this node from ``--config`` or explicit flags."""
    from hermes_fed.errors import ConfigError

    tenant, store, keyring = args.tenant_id, args.store, args.keyring
    if args.config:
        from tenant_node.config import load_node_config

        node = load_node_config(args.config)
        tenant = tenant or node.tenant_id
        store = store or node.resolved_store_url
        if not keyring and node.resolved_keyring_path.is_file():
            keyring = str(node.resolved_keyring_path)
    if not tenant or not store:
        raise ConfigError("node join needs --config, or both --tenant-id and --store")
    config: dict[str, str | int | float] = {
        "tenant-id": tenant, "store": store,
        "base-model": str(Path(args.base_model).resolve()),
        "k-min": args.k_min, "heldout-fraction": args.heldout_fraction,
    }
    if keyring:
        config["keyring"] = str(Path(keyring).resolve())
    if args.config:  # the node's [quality] table scores and selects in rounds too
        config["quality-config"] = str(Path(args.config).resolve())
    return config


def _join(args: argparse.Namespace) -> int:
    from hermes_fed.federation.processes import flower_env, start_supernode

    config = node_config_from_args(args)
    home = Path(args.home or f"var/flower-node-{config['tenant-id']}").resolve()
    node = start_supernode(home, args.superlink, config, port=args.port,
                           isolation=args.isolation, name=f"supernode-{config['tenant-id']}",
                           certs=Path(args.certs).resolve() if args.certs else None,
                           auth_key=Path(args.auth_key).resolve() if args.auth_key else None)
    worker = None
    if args.isolation == "process":
        worker = subprocess.Popen(  # our own argv, no shell
            [sys.executable, "-m", "tenant_node.flower.warm_clientapp", "--runtime-api-address",
             node.address], env=flower_env(home), start_new_session=True)
    print(f"SuperNode for tenant {config['tenant-id']} joined {args.superlink} "
          f"(pid {node.pid}, log {node.log_path})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            if not node.alive():
                print(f"SuperNode exited ({node.popen.returncode}); log {node.log_path}")
                return 1
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=10)
        node.stop()
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("join", help="run this node's Flower SuperNode (federated rounds)")
    p.add_argument("--superlink", required=True, help="the coordinator's 127.0.0.1:PORT")
    p.add_argument("--base-model", required=True, help="local base-model dir")
    p.add_argument("--config", default=None, help="node TOML (tenant_id, store, key ring)")
    p.add_argument("--tenant-id", default=None, help="tenant id (overrides --config)")
    p.add_argument("--store", default=None, help="event-store URL (overrides --config)")
    p.add_argument("--keyring", default=None, help="key-ring file of the store")
    p.add_argument("--k-min", type=int, default=20, help="egress small-cell bound; default 20")
    p.add_argument("--heldout-fraction", type=float, default=0.2,
                   help="share of trajectories kept for evaluation; default 0.2")
    p.add_argument("--isolation", choices=("subprocess", "process"), default="subprocess",
                   help="ClientApp per message (subprocess) or a long-lived worker (process)")
    p.add_argument("--home", default=None, help="Flower home of this SuperNode")
    p.add_argument("--port", type=int, default=None, help="SuperNode runtime port; default free")
    p.add_argument("--certs", default=None,
                   help="verify the coordinator's TLS with this certs dir's ca.pem; default none")
    p.add_argument("--auth-key", default=None,
                   help="this node's ECDSA private key (node auth, from certs init)")
    p.set_defaults(func=_join)
