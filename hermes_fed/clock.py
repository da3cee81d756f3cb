"""Where time comes from: the wall clock in production, a shifted one in a simulation.

Decisions that depend on elapsed time (an A/B test's minimum duration, days since a node
last trained, a production version's quality trend) read :func:`current_clock` instead of
the system time, so a simulator can compress weeks into minutes without any setting of
its own in production config. The clock is injected by the environment of the processes
that decide: ``HERMES_FED_CLOCK_FILE`` names a JSON file ``{"offset_seconds": S}`` that
the simulator advances; the time is then the wall clock plus ``S`` (it keeps flowing
between advances, so ordering by time stays the order of events).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from hermes_fed.errors import ConfigError

CLOCK_ENV = "HERMES_FED_CLOCK_FILE"


class Clock(Protocol):
    """Something that tells the time (timezone-aware UTC)."""

    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class WallClock:
    """The system clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class OffsetClock:
    """The wall clock plus the offset a file holds (re-read at every call)."""

    path: Path

    def offset(self) -> timedelta:
        try:
            body = json.loads(self.path.read_text())
            return timedelta(seconds=float(body["offset_seconds"]))
        except FileNotFoundError:
            return timedelta(0)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{CLOCK_ENV}={self.path}: not a clock file "
                              f'({{"offset_seconds": S}}): {exc}') from None

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset()

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock on by ``delta`` (atomically: write, then rename)."""
        offset = self.offset() + delta
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"offset_seconds": offset.total_seconds()}))
        tmp.replace(self.path)
        return datetime.now(UTC) + offset


def current_clock(env: Mapping[str, str] | None = None) -> Clock:
    """The clock this process's environment injects (the wall clock by default)."""
    path = (os.environ if env is None else env).get(CLOCK_ENV)
    return OffsetClock(Path(path)) if path else WallClock()
