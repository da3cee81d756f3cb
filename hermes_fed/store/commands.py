"""``hermes-fed log``: verify, inspect and erase in a tenant's event log.

Every command here (and every ``hermes-fed quality`` command) names its log by
``--config node.toml`` (the store URL, tenant, schema and key ring the node uses) or by
``--store/--tenant/--schema/--keyring``; an explicit flag wins over the config file, which
wins over ``HERMES_FED_STORE`` / ``HERMES_FED_TENANT`` / ``HERMES_FED_KEYRING_FILE``.
They read an existing log only: a missing file or schema, or a tenant with no event in it,
is an error (:func:`hermes_fed.store.location.require_existing_log`), never a new empty log.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

from hermes_fed.errors import ConfigError
from hermes_fed.events.codec import canonical_json

from .keyring import ENV_VAR, Keyring
from .location import (
    StoreLocation,
    is_node_config,
    node_store_location,
    read_toml,
    require_existing_log,
)
from .sql import SqlEventStore, open_store


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that opens a tenant log takes."""
    parser.add_argument(
        "--config", default=None,
        help="the node's TOML: store URL, tenant, schema and key ring come from it, and its "
             "[quality] table configures quality commands (a TOML holding only [quality] "
             "configures quality alone)")
    parser.add_argument(
        "--store", default=None,
        help="database URL: sqlite:///path/tenant.db or postgresql+psycopg://user@host/db "
        "(default: the node config's, else env HERMES_FED_STORE)",
    )
    parser.add_argument("--tenant", default=None,
                        help="tenant id (default: the node config's, else env "
                             "HERMES_FED_TENANT, else 'default')")
    parser.add_argument("--schema", default=None,
                        help="PostgreSQL schema of the tenant's log (default: the node "
                             "config's store_schema)")
    parser.add_argument(
        "--keyring", default=None,
        help=f"key ring file (default: the node config's, else env HERMES_FED_KEYRING_FILE, "
             f"else ${ENV_VAR} if set; else the log is read without keys)",
    )


def location_from_args(args: argparse.Namespace) -> StoreLocation:
    """The log the flags name: flag, else ``--config`` node TOML, else environment."""
    node: StoreLocation | None = None
    if getattr(args, "config", None) and is_node_config(read_toml(args.config)):
        node = node_store_location(args.config)
    url = args.store or (node.url if node else None) or os.environ.get("HERMES_FED_STORE")
    if not url:
        raise ConfigError("no event store: give --config node.toml or --store URL "
                          "(or set HERMES_FED_STORE)")
    tenant = (args.tenant or (node.tenant_id if node else None)
              or os.environ.get("HERMES_FED_TENANT") or "default")
    schema = args.schema or (node.schema if node else None)
    keyring = (args.keyring or (node.keyring_path if node else None)
               or os.environ.get("HERMES_FED_KEYRING_FILE"))
    return StoreLocation(url, tenant, schema, keyring)


def _keyring(path: str | None) -> Keyring | None:
    if path:
        return Keyring.from_file(path)
    if os.environ.get(ENV_VAR):
        return Keyring.from_env()
    return None


def keyring_from_args(args: argparse.Namespace) -> Keyring | None:
    return _keyring(location_from_args(args).keyring_path)


def open_from_args(args: argparse.Namespace) -> SqlEventStore:
    """Open the existing log the flags name (see the module docstring); never create one."""
    where = location_from_args(args)
    require_existing_log(where.url, where.tenant_id, where.schema)
    return open_store(where.url, where.tenant_id, keyring=_keyring(where.keyring_path),
                      schema=where.schema)


def _verify(args: argparse.Namespace) -> int:
    with open_from_args(args) as store:
        report = store.verify()
    print(report)
    return 0 if report.ok else 1


def _tail(args: argparse.Namespace) -> int:
    with open_from_args(args) as store:
        after = max(0, store.head() - args.n)
        for event in store.read(after=after):
            line = f"{event.position:>8} {event.recorded_at:%Y-%m-%dT%H:%M:%S} {event.stream_id} {event.type}"
            if args.data:
                line += " " + canonical_json(dict(event.data)).decode()
            if event.erased_fields:
                line += f" (erased: {','.join(event.erased_fields)})"
            print(line)
    return 0


def _stats(args: argparse.Namespace) -> int:
    with open_from_args(args) as store:
        counts = Counter(e.type for e in store.read())
        print(f"tenant {store.tenant_id}: {sum(counts.values())} events, head {store.head()}")
    for event_type, n in sorted(counts.items()):
        print(f"  {event_type:<28} {n}")
    return 0


def _erase(args: argparse.Namespace) -> int:
    with open_from_args(args) as store:
        position = store.erase_subject(args.user_ref, reason=args.reason)
    print(f"subject erased at position {position}; its personal fields are now unreadable")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    ring = Keyring.from_file(args.keyring_file)
    key_id = ring.rotate()
    ring.save(args.keyring_file)
    print(f"new active key {key_id}; older keys still decrypt older rows")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("verify", help="recompute the hash chain; name the first bad position")
    add_store_arguments(p)
    p.set_defaults(func=_verify)

    p = sub.add_parser("tail", help="print the last events (types and streams; --data to decrypt)")
    add_store_arguments(p)
    p.add_argument("-n", type=int, default=20, help="how many events")
    p.add_argument("--data", action="store_true", help="also print decrypted (redacted) data")
    p.set_defaults(func=_tail)

    p = sub.add_parser("stats", help="count events by type")
    add_store_arguments(p)
    p.set_defaults(func=_stats)

    p = sub.add_parser("erase", help="erase a subject: destroy their key (crypto-shredding)")
    add_store_arguments(p)
    p.add_argument("--user-ref", required=True, help="the subject's user_ref")
    p.add_argument("--reason", default="", help="recorded with the erasure")
    p.set_defaults(func=_erase)

    p = sub.add_parser("rotate-key", help="add a new active data key to a key ring file")
    p.add_argument("keyring_file", help="key ring JSON file")
    p.set_defaults(func=_rotate)
