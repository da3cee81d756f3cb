"""Training-data selection: tiers -> per-tier budgets -> balanced, deduplicated manifest.

``select_training_data`` is pure and reproducible: the same candidates (in any order) and
the same seed give the same manifest, byte for byte, hence the same ``sha256``.

Steps (DESIGN.md §5):

1. drop trajectories already used in training (``exclude_used``; erased ones are never
   candidates, their text is gone). "Used" means a *completed local run* of this node
   recorded a manifest holding them (``node train``); a federated round passes
   ``exclude_used=False`` (by default): the global adapter it trains never saw the local
   run's data, and federated rounds re-select from the whole train split each round;
2. remove near-duplicates by MinHash over task + final response, keeping the member with
   the highest combined score (ties: the smallest id);
3. give each tier its budget ``max(min, floor(N * fraction))``: platinum max(50, N/25),
   gold max(200, N/5), silver max(500, N/2), bronze max(100, N/10);
4. fill each budget round-robin across ``task_type`` from seeded shuffles, so a frequent
   task type cannot crowd out rare ones while any rare one has candidates left;
5. when that leaves the manifest short of ``target_n``, give the spare places to the tiers
   above bronze, best first, in the same balanced way. (A fixed platinum budget of 50 kept
   a node with 100 golden trajectories and nothing else to train on to half of them, while
   the silver budget of 500 stood empty; bronze never grows past its budget.)
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from hermes_fed.events import canonical_json
from hermes_fed.events.training import TrainingDataSelected

from .config import QualityConfig, SelectionConfig
from .minhash import U64, minhash_signature, remove_near_duplicates, signature_from_bytes
from .tiers import TIER_ORDER, Tier, tier_of, tier_weight

MANIFEST_VERSION = 1
# Namespace of the deterministic event id of a TrainingDataSelected: recording the same
# manifest twice is a no-op (invariant 3).
SELECTION_NAMESPACE = uuid.UUID("6c1f2a8e-5b7d-4e39-9a51-3f0c8d2e7b14")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A scored trajectory that may be selected; ``signature`` is its MinHash (bytes)."""

    trajectory_id: str
    task_type: str
    combined_score: float
    signature: bytes
    used_in_training: bool = False

    def __post_init__(self) -> None:
        if not self.trajectory_id:
            raise ValueError("Candidate.trajectory_id must be non-empty, got ''")
        score = self.combined_score
        if not isinstance(score, int | float) or math.isnan(score) or not -1 <= score <= 1:
            raise ValueError(f"Candidate {self.trajectory_id}: combined_score must be in "
                             f"[-1, 1], got {score!r}")


def candidate_signature(task: str, final_response: str,
                        config: SelectionConfig | None = None) -> bytes:
    """The MinHash signature (bytes) of ``task + "\\n" + final_response``."""
    c = config or SelectionConfig()
    signature = minhash_signature(f"{task}\n{final_response}", c.minhash_permutations,
                                  c.shingle_size)
    return signature.astype("<u8").tobytes()


@dataclass(frozen=True, slots=True)
class ManifestItem:
    trajectory_id: str
    tier: str
    weight: float
    task_type: str

    def to_json(self) -> dict[str, object]:
        return {"trajectory_id": self.trajectory_id, "tier": self.tier,
                "weight": self.weight, "task_type": self.task_type}


@dataclass(frozen=True, slots=True)
class SelectionManifest:
    """The dataset manifest: what to train on, with which weight; ``sha256`` names it."""

    target_n: int
    seed: int
    items: tuple[ManifestItem, ...]
    n_by_tier: dict[str, int]
    budgets: dict[str, int]
    excluded_used: int
    excluded_duplicates: tuple[tuple[str, str], ...]
    sha256: str

    @property
    def selection_id(self) -> str:
        return f"sel-{self.sha256[:16]}"

    @property
    def trajectory_ids(self) -> tuple[str, ...]:
        return tuple(item.trajectory_id for item in self.items)

    def to_event(self) -> TrainingDataSelected:
        # The catalog's event_type decorator is no dataclass_transform, hence the ignore.
        return TrainingDataSelected(
            selection_id=self.selection_id, target_n=self.target_n, seed=self.seed,
            manifest_sha256=self.sha256, n_by_tier=dict(self.n_by_tier),
            items=[item.to_json() for item in self.items],
        )

    @property
    def event_id(self) -> uuid.UUID:
        return uuid.uuid5(SELECTION_NAMESPACE, self.sha256)


def manifest_sha256(target_n: int, seed: int, items: Iterable[ManifestItem]) -> str:
    """SHA-256 over the canonical JSON (sorted keys, compact) of the manifest's content."""
    body = {"version": MANIFEST_VERSION, "target_n": target_n, "seed": seed,
            "items": [item.to_json() for item in items]}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def tier_budgets(target_n: int, config: SelectionConfig | None = None) -> dict[str, int]:
    """``max(min, floor(N * fraction))`` per tier."""
    c = config or SelectionConfig()
    table = {
        Tier.PLATINUM: (c.platinum_min, c.platinum_fraction),
        Tier.GOLD: (c.gold_min, c.gold_fraction),
        Tier.SILVER: (c.silver_min, c.silver_fraction),
        Tier.BRONZE: (c.bronze_min, c.bronze_fraction),
    }
    return {str(t): max(floor_min, math.floor(target_n * fraction + 1e-9))
            for t, (floor_min, fraction) in table.items()}


def balanced_sample(by_type: dict[str, list[str]], budget: int,
                    rng: np.random.Generator) -> list[str]:
    """Round-robin over task types (in a seeded order) from seeded shuffles of each type."""
    queues: list[list[str]] = []
    for task_type in sorted(by_type):
        ids = sorted(by_type[task_type])
        queues.append([ids[i] for i in rng.permutation(len(ids))])
    order = [int(i) for i in rng.permutation(len(queues))]
    queues = [queues[i] for i in order]
    chosen: list[str] = []
    cursor = [0] * len(queues)
    while len(chosen) < budget:
        progressed = False
        for q, queue in enumerate(queues):
            if len(chosen) >= budget:
                break
            if cursor[q] < len(queue):
                chosen.append(queue[cursor[q]])
                cursor[q] += 1
                progressed = True
        if not progressed:
            break
    return chosen


def select_training_data(candidates: Iterable[Candidate], target_n: int, seed: int,
                         config: QualityConfig | None = None, *,
                         exclude_used: bool = True) -> SelectionManifest:
    """Select a weighted training set of about ``target_n`` trajectories; with
    ``exclude_used`` (local runs), none a completed run already trained on.

    Raises ``ValueError`` for ``target_n < 1``, a non-integer seed, duplicate ids or
    signatures of the wrong length.
    """
    cfg = config or QualityConfig()
    if not isinstance(target_n, int) or isinstance(target_n, bool) or target_n < 1:
        raise ValueError(f"target_n must be an integer >= 1, got {target_n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    by_id: dict[str, Candidate] = {}
    for candidate in candidates:
        if candidate.trajectory_id in by_id:
            raise ValueError(f"duplicate candidate id {candidate.trajectory_id!r}")
        by_id[candidate.trajectory_id] = candidate
    fresh = [c for c in by_id.values() if not (exclude_used and c.used_in_training)]
    excluded_used = len(by_id) - len(fresh)

    expected = cfg.selection.minhash_permutations
    signed: list[tuple[str, U64]] = []
    for c in sorted(fresh, key=lambda c: (-c.combined_score, c.trajectory_id)):
        signature = signature_from_bytes(c.signature)
        if signature.size != expected:
            raise ValueError(f"candidate {c.trajectory_id}: signature has {signature.size} "
                             f"values, config expects {expected}")
        signed.append((c.trajectory_id, signature))
    kept, duplicates = remove_near_duplicates(signed, cfg.selection.dedupe_threshold,
                                              cfg.selection.lsh_bands)

    groups: dict[str, dict[str, list[str]]] = {str(t): {} for t in TIER_ORDER}
    for trajectory_id in kept:
        c = by_id[trajectory_id]
        tier = str(tier_of(c.combined_score, cfg.tiers))
        groups[tier].setdefault(c.task_type, []).append(trajectory_id)

    budgets = tier_budgets(target_n, cfg.selection)
    items: list[ManifestItem] = []
    picked: dict[str, set[str]] = {}
    for index, tier in enumerate(TIER_ORDER):
        # One generator per tier, seeded by (seed, tier): a tier's draw does not depend on
        # how many candidates the other tiers had.
        rng = np.random.default_rng([seed, index])
        picked[str(tier)] = set(balanced_sample(groups[str(tier)], budgets[str(tier)], rng))
    spare = target_n - sum(len(ids) for ids in picked.values())
    for index, tier in enumerate(TIER_ORDER[:-1]):  # step 5: spare places, best tier first
        if spare <= 0:
            break
        rest = {t: [i for i in ids if i not in picked[str(tier)]]
                for t, ids in groups[str(tier)].items()}
        extra = balanced_sample(rest, spare, np.random.default_rng([seed, index, 5]))
        picked[str(tier)].update(extra)
        spare -= len(extra)
    for tier in TIER_ORDER:
        for trajectory_id in picked[str(tier)]:
            c = by_id[trajectory_id]
            items.append(ManifestItem(trajectory_id, str(tier), tier_weight(tier, cfg.tiers),
                                      c.task_type))
    items.sort(key=lambda item: item.trajectory_id)
    n_by_tier = {str(t): sum(1 for i in items if i.tier == t) for t in TIER_ORDER}
    return SelectionManifest(
        target_n=target_n, seed=seed, items=tuple(items), n_by_tier=n_by_tier,
        budgets=budgets, excluded_used=excluded_used,
        excluded_duplicates=tuple(sorted(duplicates)),
        sha256=manifest_sha256(target_n, seed, items),
    )
