"""``hermes-fed model serve DIR``: registered into the ``model`` command group."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from hermes_fed.cli import add_config_flags, config_values
from hermes_fed.errors import ConfigError

_FLAGS = ("host", "port", "served_model_name", "device", "max_loras", "api_key_env")


def _serve(args: argparse.Namespace) -> int:
    from .model_server import ModelServeConfig, serve

    logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
                        force=True)
    loras: dict[str, str] = {}
    for spec in args.lora or ():
        name, eq, path = spec.partition("=")
        if not eq or not name or not path:
            raise ConfigError(f"--lora must be NAME=DIR, got {spec!r}")
        loras[name] = path
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    serve(args.model_dir, ModelServeConfig(**config_values(args, _FLAGS)), loras)
    return 0


def register(subparsers: Any) -> None:
    """Add ``serve`` to the ``model`` group's sub-commands."""
    from .model_server import ModelServeConfig

    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="serve a base model and LoRA adapters by name over the OpenAI chat API "
                      "(with vLLM's /v1/load_lora_adapter and /v1/unload_lora_adapter)")
    p.add_argument("model_dir", help="local Hugging Face model directory (tokenizer and chat "
                                     "template included)")
    add_config_flags(p, ModelServeConfig, _FLAGS)
    p.add_argument("--lora", action="append", metavar="NAME=DIR",
                   help="load a PEFT adapter under NAME at start (repeatable)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default 0: torch's own choice)")
    p.set_defaults(func=_serve)
