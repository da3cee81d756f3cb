"""Events of a node's training streams (``training-<run_id>``, ``selection-<id>``,
``federated-<flower run>-<round>``)."""

from __future__ import annotations

from typing import Annotated, Any

from .schema import EventRecord, MaxLen, Range, event_type


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


@event_type("FederatedRoundTrained")
class FederatedRoundTrained(EventRecord):
    """The node trained locally for round ``round`` of the federation's run ``flower_run_id``
    and its reply carried the update (DESIGN.md §5, §11).

    Ids, counts, hashes and versions only: no text, no user refs. ``occurred_at`` is when
    (the node's clock, ``hermes_fed.clock.current_clock``, which a simulation shifts as the
    coordinator's). The quality projection reads it as a training run for the AutoTrigger
    (the last run's time; "new" is what was recorded after ``log_position``, the node's log
    head the round's data was read up to) but, unlike ``TrainingRunCompleted``, it does not
    mark the manifest's trajectories used: a federated cycle trains on the same selection
    in every round, and ``exclude-used`` is about local ``node train`` runs.
    ``dataset_manifest_sha256`` is ``""`` when the node trains on its whole train split
    (``selection = "all"``).
    """

    flower_run_id: Annotated[int, Range(0, 2**64 - 1)]  # Flower run ids are uint64
    round: Annotated[int, Range(0, 2**31 - 1)]
    parent_version: Annotated[str, MaxLen(200)] | None
    dataset_manifest_sha256: Annotated[str, MaxLen(64)]
    num_examples: Annotated[int, Range(0, 2**31 - 1)]
    n_by_tier: dict[str, int]
    log_position: Annotated[int, Range(0, 2**63 - 1)]
