"""Start Flower's own ``flower-supernode`` with a shorter message-pull interval.

In flwr 1.42 a SuperNode's main loop (``flwr.supernode.start_client_internal``) waits
between its polls with hard-coded sleeps and no knob: 3 s after every pull that found no
message for it (``time.sleep(3)``), and 0.5 s at a time while it waits for the ClientApp's
reply before pushing it (``_push_messages``). On 127.0.0.1, where a whole exchange is
otherwise tens of milliseconds, those sleeps are most of its cost: a message the ServerApp
pushes waits on average 1.5 s, up to 3 s, before a node even sees it.

This module is a launcher, not a fork: it gives that one module a ``time`` whose
``sleep`` is capped at ``poll_s`` seconds (every other attribute is the real ``time``
module) and a ``pull_objects`` that retries a message's not-yet-uploaded objects from
``poll_s`` on rather than from 1 s (:mod:`hermes_fed.federation.object_retry`); no other
module is touched. Then it calls Flower's console-script entry point
``flwr.supernode.cli.flower_supernode`` with the same command line. Run it as::

    HERMES_FED_SUPERNODE_POLL_S=0.2 python -m hermes_fed.federation.supernode_launcher \\
        --insecure --superlink 127.0.0.1:9092 ...   # flower-supernode's own arguments

``HERMES_FED_SUPERNODE_POLL_S`` (seconds, ``MIN_POLL_S``..``MAX_POLL_S``) sets the cap;
unset, the launcher changes nothing and the SuperNode is exactly ``flower-supernode``.
The cost of a shorter interval is load: each idle node makes ``1/poll_s`` pull requests a
second to the SuperLink instead of one every 3 s. Our local federations (tests, demo,
bench) use it; a real deployment keeps Flower's pace unless its operator sets the variable.

The patch is pinned to what it was read against (flwr 1.42: the module imports ``time``
and sleeps exactly in those loops, see :func:`patch_supported`); against any other Flower
it logs a warning and runs Flower unchanged, so an upgrade costs speed, never a node.
``tests/unit/federation/test_supernode_launcher.py`` fails on such an upgrade.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import types
from typing import Any

logger = logging.getLogger(__name__)

POLL_ENV = "HERMES_FED_SUPERNODE_POLL_S"
"""Environment variable: the SuperNode's poll cap in seconds; unset = Flower's own 3 s."""
MIN_POLL_S = 0.01
MAX_POLL_S = 3.0
PINNED_FLWR = "1.42."
"""The Flower release line whose ``start_client_internal`` this launcher was read against."""
_TARGET = "flwr.supernode.start_client_internal"
_EXPECTED_SLEEPS = ("time.sleep(3)", "time.sleep(0.5)")


def poll_interval(environ: dict[str, str] | os._Environ[str] | None = None) -> float | None:
    """The configured cap from ``HERMES_FED_SUPERNODE_POLL_S``; ``None`` when unset.

    Raises
    ------
    ValueError
        When the value is not a finite number of seconds in ``[MIN_POLL_S, MAX_POLL_S]``.
    """
    raw = (os.environ if environ is None else environ).get(POLL_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not MIN_POLL_S <= value <= MAX_POLL_S:
        raise ValueError(f"{POLL_ENV} must be seconds between {MIN_POLL_S} and {MAX_POLL_S}, "
                         f"got {raw!r}")
    return value


def poll_seconds_arg(text: str) -> float:
    """``--poll-interval`` of ``node join`` and ``coordinator serve``: the same bounds."""
    import argparse

    try:
        value = poll_interval({POLL_ENV: text})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace(POLL_ENV, "--poll-interval")) from None
    if value is None:
        raise argparse.ArgumentTypeError("--poll-interval needs a number of seconds")
    return value


class CappedSleepTime(types.ModuleType):
    """The ``time`` module, except that ``sleep(s)`` sleeps ``min(s, cap)``."""

    def __init__(self, cap: float) -> None:
        super().__init__("time", "time, with sleep capped for the SuperNode's poll loop")
        self.cap = cap

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self.cap))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def patch_supported(module: types.ModuleType) -> str | None:
    """Why the patch does not fit ``module`` (the imported ``start_client_internal``);
    ``None`` when it does."""
    import inspect

    import flwr

    version = str(getattr(flwr, "__version__", ""))
    if not version.startswith(PINNED_FLWR):
        return f"flwr {version} is not the {PINNED_FLWR}x this launcher was read against"
    if getattr(module, "time", None) is not time:
        return f"{_TARGET} no longer imports the time module as `time`"
    source = inspect.getsource(module)
    missing = [s for s in _EXPECTED_SLEEPS if s not in source]
    if missing:
        return f"{_TARGET} no longer sleeps with {', '.join(missing)}"
    return None


def apply(cap: float) -> bool:
    """Cap the SuperNode loop's sleeps at ``cap`` seconds in this process; whether it did."""
    import importlib

    module = importlib.import_module(_TARGET)
    current = getattr(module, "time", None)
    if isinstance(current, CappedSleepTime):
        current.cap = cap
        return True
    why = patch_supported(module)
    if why is not None:
        logger.warning("supernode poll interval not applied (%s); Flower's own pace is kept",
                       why)
        return False
    module.time = CappedSleepTime(cap)  # type: ignore[attr-defined]
    return True


def apply_all(cap: float) -> bool:
    """:func:`apply`, and the node's pulls of a message's objects retried from ``cap`` s
    (:func:`hermes_fed.federation.object_retry.retry_early`); whether both applied."""
    from hermes_fed.federation.object_retry import SUPERNODE_LOOP, retry_early

    capped = apply(cap)
    return retry_early(SUPERNODE_LOOP, cap) and capped


def main(argv: list[str] | None = None) -> int:
    """Apply the configured cap, then run ``flower-supernode`` with ``argv``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    cap = poll_interval()
    if cap is not None and apply_all(cap):
        logger.info("supernode poll interval capped at %.3f s (%s)", cap, POLL_ENV)
    from flwr.supernode.cli import flower_supernode

    sys.argv = ["flower-supernode", *(sys.argv[1:] if argv is None else argv)]
    flower_supernode()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
