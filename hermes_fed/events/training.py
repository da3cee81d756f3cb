"""Events of a node's training streams (``training-<run_id>``, ``selection-<id>``)."""

from __future__ import annotations

from typing import Any

from .schema import EventRecord, event_type


@event_type("TrainingDataSelected")
class TrainingDataSelected(EventRecord):
    selection_id: str
    target_n: int
    seed: int
    manifest_sha256: str
    n_by_tier: dict[str, int]
    items: list[dict[str, Any]]  # {trajectory_id, tier, weight}


@event_type("TrainingRunStarted")
class TrainingRunStarted(EventRecord):
    run_id: str
    base_model: str
    parent_version: str | None
    dataset_manifest_sha256: str
    n_by_tier: dict[str, int]
    config: dict[str, Any]


@event_type("TrainingRunCompleted")
class TrainingRunCompleted(EventRecord):
    run_id: str
    base_model: str
    parent_version: str | None
    dataset_manifest_sha256: str
    n_by_tier: dict[str, int]
    metrics: dict[str, Any]
    adapter_sha256: str = ""


@event_type("TrainingRunFailed")
class TrainingRunFailed(EventRecord):
    run_id: str
    base_model: str
    parent_version: str | None
    dataset_manifest_sha256: str
    n_by_tier: dict[str, int]
    error: str
