"""The ``hermes-fed`` command.

Command groups are registered by name and loaded lazily, so ``hermes-fed log verify``
does not pay for importing torch. Each group module exposes
``register(parser: argparse.ArgumentParser) -> None`` which adds its sub-commands; every
sub-command sets ``func(args) -> int`` as its default.

The groups for the node and the coordinator live in ``tenant_node`` and ``coordinator``;
they are named here as strings so that ``hermes_fed`` never imports them at module level.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hermes_fed.errors import HermesFedError

# (group, help, "module:function")
COMMAND_GROUPS: tuple[tuple[str, str, str], ...] = (
    (
        "demo",
        "the whole flywheel on 127.0.0.1: 3 tenant nodes, a Flower federation, A/B, promotion, report",
        "examples.flywheel.demo_command:register",
    ),
    ("log", "inspect and verify a tenant's event log", "hermes_fed.store.commands:register"),
    (
        "example",
        "bundled example: append sessions, verify, summarise",
        "examples.flywheel.commands:register",
    ),
    (
        "model",
        "build a tiny base model; train and evaluate LoRA adapters; promote/rollback/history",
        "coordinator.cli.model_commands:register",
    ),
    ("node", "run a tenant node: serve gRPC ingest, import/export JSONL, assign A/B arms",
     "tenant_node.cli.commands:register"),
    ("quality", "quality pipeline: scores, judges, selection, trigger",
     "hermes_fed.quality.commands:register"),
    ("coordinator", "run the coordinator: Flower SuperLink, registry, reports",
     "coordinator.cli.commands:register"),
    ("round", "run federated LoRA rounds (exact | fedavg | frozen-a)",
     "coordinator.cli.commands:register_round"),
    ("certs", "TLS certificates and node keys for the federation",
     "coordinator.deploy.certs:register"),
    ("ab", "cross-tenant A/B tests: create, status, conclude", "coordinator.cli.ab_commands:register"),
    ("redact", "preview PII/secret redaction of a text or file", "hermes_fed.privacy.commands:register"),
)

Register = Callable[[argparse.ArgumentParser], None]


def _load(target: str) -> Register:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    register: Register = getattr(module, attr)
    return register


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def add_config_flags(
    parser: argparse.ArgumentParser,
    config_cls: type,
    names: Sequence[str],
    choices: Mapping[str, Sequence[Any]] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """One ``--flag`` per field of the dataclass ``config_cls`` named in ``names``.

    The flag is the field's name with dashes; its type, default and help come from the
    field, so a command and its config cannot disagree (a bool field is a
    ``--flag/--no-flag`` switch). ``defaults`` overrides a default for this command only
    (the demo's small model wants another learning rate than production).
    """
    by_name = {f.name: f for f in dataclasses.fields(config_cls)}
    for name in names:
        f = by_name[name]
        default = (defaults or {}).get(name, _field_default(f))
        flag = f"--{name.replace('_', '-')}"
        help_text = f"{f.metadata.get('help', name)} (default {default})"
        if str(f.type) == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
            continue
        kind = {"int": int, "float": float, "str": str}.get(str(f.type), str)
        parser.add_argument(flag, type=kind, default=default,
                            choices=list(choices[name]) if choices and name in choices else None,
                            help=help_text)


def config_values(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The parsed values of :func:`add_config_flags`'s flags, by field name."""
    return {name: getattr(args, name) for name in names}


DAEMON_LOG_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def daemon_logging(verbose: int) -> None:
    """Structured key=value logs for a long-running command (INFO, DEBUG with ``-vv``)."""
    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO,
                        format=DAEMON_LOG_FORMAT, force=True)
    # presidio names every recognizer it loads at INFO; the daemons report what matters.
    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def stop_on_signals(stop: Callable[[], None]) -> None:
    """Call ``stop`` on SIGTERM or SIGINT (logged), so a daemon shuts down in order."""
    import signal

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger(__name__).info("event=signal signal=%s", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hermes-fed", description="A federated data flywheel for AI agents."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")
    # Only the group actually invoked is imported (its import may pull in torch).
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, help_text, target in COMMAND_GROUPS:
        sub = groups.add_parser(name, help=help_text, description=help_text)
        if name == wanted:
            _load(target)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except HermesFedError as exc:
        print(f"hermes-fed: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
