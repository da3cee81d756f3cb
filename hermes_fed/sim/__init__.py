"""hermes_fed.sim: the flywheel simulator (issue 10) and the bundled example log.

Names load lazily, so ``hermes-fed example`` does not pay for torch:

- ``SimTenant``, ``default_tenants`` (``tenants``): non-IID synthetic tenants with PII;
- ``simulate_sessions(tenant, model_dir, adapter, n, seed) -> list[list[NewEvent]]``
  (``sessions``): usage by the tiny model + adapter, simulated users' feedback as events;
- ``cold_start_trajectories(task_types, n_per_type, seed)`` (``coldstart``): golden
  trajectories from templates, or from an OpenAI-compatible teacher (``TeacherConfig``);
- ``FAMILIES`` (``tasks``): task families with real tools and verifiers;
- ``TenantPool`` (``flywheel``): redacted, scored, tiered trajectories and selection.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SimTenant": "hermes_fed.sim.tenants",
    "default_tenants": "hermes_fed.sim.tenants",
    "simulate_sessions": "hermes_fed.sim.sessions",
    "run_sessions": "hermes_fed.sim.sessions",
    "cold_start_trajectories": "hermes_fed.sim.coldstart",
    "TeacherConfig": "hermes_fed.sim.coldstart",
    "FAMILIES": "hermes_fed.sim.tasks",
    "TenantPool": "hermes_fed.sim.flywheel",
    "LocalAgent": "hermes_fed.sim.agent",
    "pretrain_base": "hermes_fed.sim.pretrain",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hermes_fed.sim' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
