"""One tenant's side of a flywheel round, in process: redact -> score -> tier -> select.

The same pure pieces a node runs (DESIGN.md §4-§5): every event batch goes through the
redaction gate before anything reads it; implicit signals are folded and scored with the
quality library; selection is its seeded, balanced, deduplicated ``select_training_data``.
A :class:`TenantPool` keeps the tenant's redacted, scored trajectories across rounds
(the data grows as the flywheel turns); cold-start golden trajectories enter it with a
human label of 1.0.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hermes_fed.events import NewEvent
from hermes_fed.quality.config import QualityConfig, SelectionConfig
from hermes_fed.quality.judges import broken_trajectories
from hermes_fed.quality.scoring import combined_score, implicit_score
from hermes_fed.quality.selection import Candidate, candidate_signature, select_training_data
from hermes_fed.quality.signals import fold_signals
from hermes_fed.quality.tiers import tier_of
from hermes_fed.training.dataset import TrainingExample


def node_quality_config(dedupe_threshold: float = 1.0) -> QualityConfig:
    """The quality config a demo node selects with: the default ``QualityConfig``, with
    near-duplicates at ``dedupe_threshold`` (the demo's nodes set 1.0: MinHash
    over character shingles cannot tell template tasks apart at 0.8)."""
    return QualityConfig(selection=SelectionConfig(dedupe_threshold=dedupe_threshold))


@dataclass(frozen=True, slots=True)
class ScoredTrajectory:
    """A redacted trajectory with its combined score and tier."""

    trajectory: dict[str, Any]
    score: float
    tier: str
    golden: bool


@dataclass(slots=True)
class TenantPool:
    """A tenant's scored trajectories so far (mutable: the flywheel adds to it)."""

    tenant_id: str
    config: QualityConfig = field(default_factory=node_quality_config)
    items: dict[str, ScoredTrajectory] = field(default_factory=dict)

    def add_golden(self, trajectories: Iterable[dict[str, Any]]) -> int:
        """Cold-start trajectories, labelled 1.0 by a human (they are correct by S1)."""
        added = 0
        for t in trajectories:
            score = combined_score(0.0, human=1.0, weights=self.config.combine).score
            self.items[str(t["trajectory_id"])] = ScoredTrajectory(
                dict(t), score, str(tier_of(score, self.config.tiers)), True)
            added += 1
        return added

    def add_events(self, events: Sequence[NewEvent]) -> int:
        """Score the trajectories of (already redacted) session events; returns how many."""
        signals = fold_signals((e.type, e.data) for e in events)
        added = 0
        for e in events:
            if e.type != "TrajectoryRecorded":
                continue
            tid = str(e.data["trajectory_id"])
            implicit = implicit_score(signals[tid], self.config.implicit).score
            score = combined_score(implicit, weights=self.config.combine).score
            self.items[tid] = ScoredTrajectory(dict(e.data), score,
                                               str(tier_of(score, self.config.tiers)), False)
            added += 1
        return added

    def tier_counts(self, golden: bool | None = None) -> dict[str, int]:
        counts = Counter(s.tier for s in self.items.values()
                         if golden is None or s.golden == golden)
        return dict(sorted(counts.items()))

    def select(self, seed: int, target_n: int | None = None) -> list[TrainingExample]:
        """The selection manifest's examples (tier weights), over the whole pool, by the
        node's rule (``tenant_node.flower.local_round.load_local_data``): trajectories with broken
        tool use leave before selection, the rest are selected with ``target_n`` (default:
        all of them) as the budget."""
        broken = broken_trajectories({tid: s.trajectory for tid, s in self.items.items()})
        allowed = [(tid, s) for tid, s in sorted(self.items.items()) if tid not in broken]
        if not allowed:
            return []
        candidates = [
            Candidate(tid, str(s.trajectory["task_type"]), s.score,
                      candidate_signature(str(s.trajectory["task"]),
                                          str(s.trajectory["final_response"]),
                                          self.config.selection))
            for tid, s in allowed
        ]
        manifest = select_training_data(candidates, target_n or len(candidates), seed,
                                        self.config)
        return [TrainingExample(self.items[i.trajectory_id].trajectory, float(i.weight), i.tier)
                for i in manifest.items]


def redact_batches(redactor: Any, batches: Sequence[Sequence[NewEvent]]) -> list[NewEvent]:
    """Every event of every batch through the node's redaction gate, flattened."""
    out: list[NewEvent] = []
    for batch in batches:
        out.extend(redactor.redact_new_events(list(batch)))
    return out


def leaked(planted: Iterable[str], events: Sequence[NewEvent]) -> list[str]:
    """Planted PII values still present anywhere in the events' data (should be empty)."""
    text = "\n".join(json.dumps(e.data, ensure_ascii=False) for e in events)
    return sorted({value for value in planted if value and value in text})
