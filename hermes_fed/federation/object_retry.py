"""Retry a Flower message's not-yet-uploaded objects sooner than Flower's 1 s.

In flwr 1.42 a message travels as a head and then its objects: the receiver sees the
head as soon as the sender pushed it and pulls the objects, and an object the sender has
not finished uploading is retried with exponential backoff from 1 s to 10 s
(``flwr.supercore.inflatable.inflatable_utils.pull_objects``, ``PULL_INITIAL_BACKOFF``,
``PULL_BACKOFF_CAP``). On loopback the upload takes tens to hundreds of milliseconds, so
a receiver that asked a moment too early waits most of a second (logs of
``bench/flower/exchange.py --trace``): a SuperNode for the ServerApp's message, and the
ServerApp for each node's reply.

:func:`retry_early` gives one Flower module a ``pull_objects`` with the first retry after
``first_s`` and retries never further apart than Flower's first (1 s); nothing else
changes (same function, same limits). Used by the SuperNode launcher
(:mod:`hermes_fed.federation.supernode_launcher`, module
``flwr.supernode.start_client_internal``) and by the coordinator's ServerApp (module
``flwr.superlink.grid.http_grid``). Pinned to flwr 1.42 like the launcher: on another
Flower it warns and changes nothing.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from typing import Any

logger = logging.getLogger(__name__)

SERVERAPP_GRID = "flwr.superlink.grid.http_grid"
"""The module whose ``pull_objects`` the ServerApp's ``Grid.pull_messages`` calls."""
SUPERNODE_LOOP = "flwr.supernode.start_client_internal"
"""The module whose ``pull_objects`` the SuperNode's message pull calls."""


def _flower_pull_objects() -> Any:
    from flwr.supercore.inflatable import inflatable_utils

    return inflatable_utils.pull_objects


def retry_early(module_name: str, first_s: float) -> bool:
    """In ``module_name``, retry unavailable objects after ``first_s``, doubling up to
    ``max(first_s, 1.0)`` s; whether it applied (it refuses a module it was not read
    against, see the module docstring)."""
    import flwr
    from flwr.supercore.constant import PULL_INITIAL_BACKOFF

    module = importlib.import_module(module_name)
    flower = _flower_pull_objects()
    current = getattr(module, "pull_objects", None)
    is_ours = isinstance(current, functools.partial) and current.func is flower
    why = None
    if not str(getattr(flwr, "__version__", "")).startswith("1.42."):
        why = f"flwr {flwr.__version__} is not the 1.42.x this was read against"
    elif current is not flower and not is_ours:
        why = f"{module_name} no longer calls flwr's pull_objects by that name"
    elif not {"initial_backoff", "backoff_cap"} <= set(inspect.signature(flower).parameters):
        why = "flwr's pull_objects no longer takes initial_backoff and backoff_cap"
    if why is not None:
        logger.warning("early object retries not applied (%s); Flower's backoff is kept", why)
        return False
    module.pull_objects = functools.partial(  # type: ignore[attr-defined]
        flower, initial_backoff=first_s, backoff_cap=max(first_s, float(PULL_INITIAL_BACKOFF)))
    return True
