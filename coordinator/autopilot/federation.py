"""What the autopilot asks of the nodes: the :class:`Federation` port and its records.

The runner (:mod:`.runner`) does every exchange through this small surface, so the state
machine and the runner are tested against an in-process implementation over the real
coordinator log, and the Flower-backed one (:mod:`.grid_federation`) stays a thin adapter
of messages the nodes already answer (``query.trigger``, ``train``, ``query.ab_stats``,
``deploy``). Nodes are named by tenant (the ``tenant-id`` of their replies), never by a
numeric id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np

from hermes_fed.abtest import ArmStats, TenantArms
from hermes_fed.federation.delivery import DeploySpec
from hermes_fed.federation.queries import AbQuery

from .decide import Readiness


@dataclass(frozen=True, slots=True)
class DeployAck:
    """One node's answer to ``deploy``: the plan it now applies, or why it could not."""

    tenant: str
    applied_plan: str | None
    installed: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class OnlineStats:
    """Per-tenant arms of an online look; tenants without both arms, with why."""

    arms: tuple[TenantArms, ...] = ()
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PairedStats:
    """Per-tenant paired held-out differences of an offline look."""

    paired: Mapping[str, ArmStats] = field(default_factory=dict)
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VersionStats:
    """A version's session quality over the tenants that reported it."""

    total: ArmStats = field(default_factory=ArmStats)
    tenants: int = 0
    missing: tuple[str, ...] = ()


class Federation(Protocol):
    """The nodes, as the autopilot sees them."""

    def poll_triggers(self, now: datetime) -> Readiness:
        """Every node's ``query.trigger`` decision at ``now``."""

    def run_rounds(self, parent: str | None, rounds: int) -> list[str]:
        """``rounds`` federated rounds from ``parent`` (None: the registry's latest
        compatible version); each publishes a version to the registry. Returns them."""

    def offline_look(self, query: AbQuery) -> PairedStats:
        """The candidate vs the control scored on every node's held-out split."""

    def online_look(self, query: AbQuery) -> OnlineStats:
        """Each node's per-arm session quality for the test ``query.ab_test_id``."""

    def version_quality(self, version: str, since_us: int) -> VersionStats:
        """The quality of ``version``'s sessions since ``since_us`` on every node."""

    def deploy(self, spec: DeploySpec,
               tensors: Sequence[Mapping[str, np.ndarray]]) -> list[DeployAck]:
        """Send every node the plan and the adapters (``tensors[i]`` is
        ``spec.adapters[i]``); one ack per node that is serving."""
