"""examples.flywheel: the flywheel simulator (issue 10) and the bundled example log.

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
    "SimTenant": "examples.flywheel.tenants",
    "default_tenants": "examples.flywheel.tenants",
    "simulate_sessions": "examples.flywheel.sessions",
    "run_sessions": "examples.flywheel.sessions",
    "cold_start_trajectories": "examples.flywheel.coldstart",
    "TeacherConfig": "examples.flywheel.coldstart",
    "FAMILIES": "examples.flywheel.tasks",
    "TenantPool": "examples.flywheel.flywheel",
    "LocalAgent": "examples.flywheel.agent",
    "pretrain_base": "examples.flywheel.pretrain",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'examples.flywheel' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
