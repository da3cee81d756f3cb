"""The ``hermes-fed node`` command group.

Sub-commands live in their own modules, listed in :data:`SUBCOMMAND_MODULES`; each exposes
``register(subparsers)`` adding its parsers with ``set_defaults(func=...)``. Add a module to
the list to add sub-commands; keep heavy imports inside the ``func`` so ``--help`` is cheap.
"""

from __future__ import annotations

import argparse
import importlib

SUBCOMMAND_MODULES: list[str] = [
    "tenant_node.cli.serve_command",
    "tenant_node.cli.data_commands",
    "tenant_node.cli.train_command",
    "tenant_node.cli.status_command",
    "tenant_node.cli.join_command",
    "tenant_node.gateway.commands",
]


def register(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="node_command", metavar="SUBCOMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
