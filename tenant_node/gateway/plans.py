"""The node's traffic plans in its log, and the adapter versions on its disk.

A plan is recorded as ``TrafficPlanApplied`` on the stream ``traffic-plan``; the current
plan is the stream's last event. Adapter versions live under the node's adapters
directory as ``<dir>/<version>/`` (PEFT: ``adapter_config.json`` + weights); a version
is written once and never replaced in place (an upstream that reloads a name reuses stale
prefix-cache blocks, vLLM issue #42125), so installing a different adapter under a known
version is refused.
"""

from __future__ import annotations

import filecmp
import logging
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hermes_fed.errors import ConfigError
from hermes_fed.events import NewEvent
from hermes_fed.events.serving import TrafficPlanApplied
from hermes_fed.serving.plan import BASE_VERSION, PLAN_STREAM, TrafficPlan, check_name
from hermes_fed.store import EventStore

log = logging.getLogger(__name__)
ADAPTER_CONFIG = "adapter_config.json"
_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True, slots=True)
class AppliedPlan:
    """A plan as the log holds it: the plan, its stream version and when it was recorded."""

    plan: TrafficPlan
    version: int
    recorded_at: datetime


def current_plan(store: EventStore, after_version: int = 0) -> AppliedPlan | None:
    """The latest plan in the log (newer than ``after_version``), or None."""
    events = store.read_stream(PLAN_STREAM, after_version=after_version)
    for event in reversed(events):
        if event.type == TrafficPlanApplied.TYPE and not event.erased:
            return AppliedPlan(TrafficPlan.from_event_data(event.data), event.stream_version,
                               event.recorded_at)
    return None


def record_plan(store: EventStore, plan: TrafficPlan, actor: str) -> int:
    """Append ``TrafficPlanApplied``; returns the plan stream's new version."""
    result = store.append([NewEvent(stream_id=PLAN_STREAM, type=TrafficPlanApplied.TYPE,
                                    data=plan.to_event_data(), event_id=uuid.uuid4(),
                                    metadata={"actor": actor})])
    log.info("event=traffic_plan_recorded test_id=%s arms=%d actor=%s", plan.test_id,
             len(plan.arms), actor)
    return result[0].stream_version


def adapter_present(adapters_dir: Path, version: str) -> bool:
    path = adapters_dir / check_name(version, "version")
    return (path / ADAPTER_CONFIG).is_file() and any((path / w).is_file() for w in _WEIGHTS)


def missing_adapters(plan: TrafficPlan, adapters_dir: Path) -> list[str]:
    """The plan's versions (other than the base) without an adapter on disk."""
    return [v for v in plan.versions if v != BASE_VERSION and not adapter_present(adapters_dir, v)]


def _same_tree(a: Path, b: Path) -> bool:
    compared = filecmp.dircmp(a, b)
    if compared.left_only or compared.right_only or compared.funny_files:
        return False
    _match, mismatch, errors = filecmp.cmpfiles(a, b, compared.common_files, shallow=False)
    return not mismatch and not errors and all(
        _same_tree(a / d, b / d) for d in compared.common_dirs)


def install_adapter(adapters_dir: Path, version: str, source: Path) -> Path:
    """Copy a PEFT adapter directory in as ``version``; a no-op when the same files are
    there already, refused when different ones are (versions are immutable)."""
    check_name(version, "version")
    if version == BASE_VERSION:
        raise ConfigError(f"{BASE_VERSION!r} names the base model; an adapter needs a version "
                          "of its own")
    if not (source / ADAPTER_CONFIG).is_file() or not any((source / w).is_file() for w in _WEIGHTS):
        raise ConfigError(f"--adapter {version}={source}: not a PEFT adapter directory "
                          f"({ADAPTER_CONFIG} + {' or '.join(_WEIGHTS)})")
    target = adapters_dir / version
    if target.exists():
        if _same_tree(source, target):
            return target
        raise ConfigError(f"adapter version {version!r} already holds different files at "
                          f"{target}; a version is never replaced in place: use a new version")
    adapters_dir.mkdir(parents=True, exist_ok=True)
    staging = adapters_dir / f".{version}.{uuid.uuid4().hex[:8]}.tmp"
    shutil.copytree(source, staging)
    staging.rename(target)  # atomic: the upstream never sees half an adapter
    return target
