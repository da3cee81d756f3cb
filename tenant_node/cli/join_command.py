"""``hermes-fed node keygen`` and ``hermes-fed node join``: this node in the federation.

``node keygen DIR`` makes the node's own ECDSA key pair on the node (``DIR/node.key``,
mode 0600, never leaves the machine; ``DIR/node.pub`` goes to the coordinator's operator,
who runs ``hermes-fed coordinator register-node``).

``node join`` starts ``flower-supernode`` on 127.0.0.1 with the node's ``--node-config``
(:class:`hermes_fed.federation.node_settings.NodeSettings`: tenant id, store URL and
PostgreSQL schema, key ring, base model, the node TOML for its ``[quality]`` table and, for
the coordinator's deliveries, its ``data_dir`` and ``[gateway]`` table), waits
until the coordinator **accepted** the node (not merely until the SuperNode is healthy:
a refused node says why and exits 1, and "joined" is printed only after acceptance), and
runs until SIGTERM/SIGINT, then stops it by PID. The node's identity and store come from
``--config node.toml`` — only its store keys are read, so no ingest token is needed — or
from ``--tenant-id``/``--store``. TLS needs only the coordinator's ``ca.pem`` (``--ca``);
node authentication the node's own private key (``--auth-key``). With ``--isolation
process`` it also runs the long-lived ClientApp worker
(``tenant_node.flower.warm_clientapp``) beside the SuperNode.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from hermes_fed.cli import add_config_flags, stop_on_signals
from hermes_fed.federation.node_settings import NodeSettings


def node_config_from_args(args: argparse.Namespace) -> dict[str, str | int | float]:
    """The ``--node-config`` of this node from ``--config`` or explicit flags (checked)."""
    from hermes_fed.errors import ConfigError

    tenant, store, keyring = args.tenant_id, args.store, args.keyring
    schema = args.schema
    if args.config:
        from hermes_fed.store.location import node_store_location

        location = node_store_location(args.config)
        tenant = tenant or location.tenant_id
        if not store:
            store, schema = location.url, schema or location.schema
        if not keyring and location.keyring_path and Path(location.keyring_path).is_file():
            keyring = location.keyring_path
    if not tenant or not store:
        raise ConfigError("node join needs --config, or both --tenant-id and --store")
    settings = NodeSettings(
        tenant_id=tenant, store=store, base_model=str(Path(args.base_model).resolve()),
        store_schema=schema or "", keyring=str(Path(keyring).resolve()) if keyring else "",
        k_min=args.k_min, heldout_fraction=args.heldout_fraction, split_seed=args.split_seed,
        # the node's [quality] table scores and selects in rounds too
        quality_config=str(Path(args.config).resolve()) if args.config else "")
    return settings.to_node_config()


def _join(args: argparse.Namespace) -> int:
    from hermes_fed.federation.processes import flower_env, start_supernode, wait_accepted

    config = node_config_from_args(args)
    home = Path(args.home or f"var/flower-node-{config['tenant-id']}").resolve()
    ca_file = Path(args.ca).resolve() if args.ca else None
    auth_key = Path(args.auth_key).resolve() if args.auth_key else None
    node = start_supernode(home, args.superlink, config, port=args.port,
                           isolation=args.isolation, name=f"supernode-{config['tenant-id']}",
                           ca_file=ca_file, auth_key=auth_key, poll_s=args.poll_interval)
    print(f"SuperNode for tenant {config['tenant-id']} started (pid {node.pid}, log "
          f"{node.log_path}); waiting for the coordinator at {args.superlink} to accept it",
          flush=True)
    node_id = wait_accepted(node, superlink=args.superlink, ca_file=ca_file,
                            auth_key=auth_key, timeout=args.accept_timeout)
    worker = None
    if args.isolation == "process":
        worker = subprocess.Popen(  # our own argv, no shell
            [sys.executable, "-m", "tenant_node.flower.warm_clientapp", "--runtime-api-address",
             node.address, *(["--poll-interval", f"{args.poll_interval:g}"]
                             if args.poll_interval is not None else [])],
            env=flower_env(home), start_new_session=True)
    print(f"joined {args.superlink}: the coordinator accepted tenant {config['tenant-id']} "
          f"as SuperNode {node_id}", flush=True)
    stop = threading.Event()
    stop_on_signals(stop.set)
    try:
        while not stop.wait(1.0):
            if not node.alive():
                print(f"SuperNode exited ({node.popen.returncode}); log {node.log_path}",
                      file=sys.stderr)
                return 1
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=10)
        node.stop()
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from hermes_fed.federation.node_keys import make_node_key

    private, public = make_node_key(Path(args.dir))
    print(f"private key {private} (mode 0600): it never leaves this machine; "
          f"`hermes-fed node join --auth-key {private}`")
    print(f"public key {public}: send it to the coordinator's operator, who runs "
          f"`hermes-fed coordinator register-node --dir D {public.name}`")
    return 0


def register(subparsers: Any) -> None:
    from hermes_fed.federation.supernode_launcher import poll_seconds_arg

    p = subparsers.add_parser(
        "keygen", help="make this node's key pair for node authentication (on the node)")
    p.add_argument("dir", help="directory for node.key (private, 0600) and node.pub")
    p.set_defaults(func=_keygen)

    p = subparsers.add_parser("join", help="run this node's Flower SuperNode (federated rounds)")
    p.add_argument("--superlink", required=True, help="the coordinator's 127.0.0.1:PORT")
    p.add_argument("--base-model", required=True, help="local base-model dir")
    p.add_argument("--config", default=None,
                   help="node TOML: tenant_id, store_url, store_schema, key ring, [quality] "
                        "(no ingest token needed)")
    p.add_argument("--tenant-id", default=None, help="tenant id (overrides --config)")
    p.add_argument("--store", default=None, help="event-store URL (overrides --config)")
    p.add_argument("--schema", default=None,
                   help="PostgreSQL schema of the log (overrides --config's store_schema)")
    p.add_argument("--keyring", default=None, help="key-ring file of the store")
    add_config_flags(p, NodeSettings, ("k_min", "heldout_fraction", "split_seed"))
    p.add_argument("--isolation", choices=("subprocess", "process"), default="subprocess",
                   help="ClientApp per message (subprocess) or a long-lived worker (process)")
    p.add_argument("--poll-interval", type=poll_seconds_arg, default=None,
                   help="seconds between the SuperNode's pulls from the coordinator (and its "
                        "task polls), 0.01-3; default Flower's own (3 s pulls): each idle "
                        "node then asks the coordinator 1/N times a second "
                        "(hermes_fed.federation.supernode_launcher)")
    p.add_argument("--home", default=None, help="Flower home of this SuperNode")
    p.add_argument("--port", type=int, default=None, help="SuperNode runtime port; default free")
    p.add_argument("--ca", default=None,
                   help="the coordinator's CA certificate (its ca.pem, from its operator): "
                        "verify the SuperLink's TLS; default none (plaintext)")
    p.add_argument("--auth-key", default=None,
                   help="this node's private key (node.key of `node keygen`) for node "
                        "authentication; needs --ca")
    p.add_argument("--accept-timeout", type=float, default=120.0,
                   help="seconds to wait for the coordinator to accept the node (0: as long "
                        "as the SuperNode keeps trying); default 120")
    p.set_defaults(func=_join)
