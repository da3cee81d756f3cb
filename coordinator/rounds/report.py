"""The round report: per node examples, loss, update norm, bytes; residual; held-out metrics.

Plain records (JSON via ``to_dict``) and a text table for the terminal. Built by
``coordinator.rounds.loop`` from replies and the aggregation report; contains no data of any
tenant beyond what the egress guard let out (counts, metric values, version ids).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class NodeRoundReport:
    """One node in one round."""

    node_id: str
    num_examples: int
    train_loss: float | None
    update_norm: float | None
    bytes_down: int
    bytes_up: int
    handler_seconds: float | None
    train_seconds: float | None
    heldout_before: float | None
    heldout_after: float | None
    heldout_n: int | None
    truncated: int = 0
    outlier: bool = False
    error: str | None = None
    tenant: str | None = None
    """The tenant the node named in its replies (None: it never said; see ``name``)."""
    selected: int | None = None
    """Trajectories the node selected (``count.selected``; None when suppressed)."""

    @property
    def name(self) -> str:
        """The tenant, or the Flower node id of a node that never named its tenant."""
        return self.tenant or f"node-{self.node_id}"

    def length_note(self) -> str | None:
        """What examples lost to ``--max-length`` cost, in words; None when none were."""
        if self.error is not None or self.selected is None:
            return None
        if self.num_examples < self.selected:
            return (f"{self.selected} selected, {self.num_examples} trained: "
                    "raise --max-length")
        if self.truncated:
            return (f"{self.truncated} of {self.num_examples} examples cut at --max-length "
                    "(trained on their beginning)")
        return None


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall-clock split of a round (seconds)."""

    train_exchange: float
    evaluate_exchange: float
    aggregation: float
    local_training_max: float
    node_handler_max: float
    publish: float

    @property
    def messaging(self) -> float:
        """Exchange time not spent inside the slowest node's handler: Flower's share."""
        return max(0.0, self.train_exchange - self.node_handler_max) + self.evaluate_exchange


@dataclass(frozen=True, slots=True)
class RoundReport:
    """Everything about one federated round."""

    run_id: int
    round: int
    mode: str
    parent_version: str | None
    version: str | None
    nodes: tuple[NodeRoundReport, ...]
    residual: float | None
    fedavg_error: float | None
    timing: Timing
    aggregation: Mapping[str, Any] = field(default_factory=dict)

    def heldout_mean(self, which: str) -> float | None:
        """Example-weighted mean held-out log-likelihood ``before`` or ``after`` the round."""
        pairs = [(getattr(n, f"heldout_{which}"), n.heldout_n or 0) for n in self.nodes]
        pairs = [(v, k) for v, k in pairs if v is not None and k > 0]
        total = sum(k for _, k in pairs)
        return sum(v * k for v, k in pairs) / total if total else None

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["timing"]["messaging"] = self.timing.messaging
        body["heldout_before"] = self.heldout_mean("before")
        body["heldout_after"] = self.heldout_mean("after")
        finite: dict[str, Any] = _finite(body)
        return finite


def _finite(value: Any) -> Any:
    """JSON-safe: NaN/inf become None (the log's canonical JSON refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _fmt(value: float | int | None, spec: str = ".4f") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def render_table(reports: Sequence[RoundReport]) -> str:
    """A fixed-width table: one row per node per round, then the round's totals."""
    head = (f"{'round':>5} {'tenant':<20} {'examples':>8} {'loss':>8} {'upd.norm':>9} "
            f"{'KiB up':>8} {'KiB down':>8} {'ll before':>9} {'ll after':>9}")
    lines = [head, "-" * len(head)]
    for rep in reports:
        for n in rep.nodes:
            note = n.length_note()
            lines.append(
                f"{rep.round:>5} {n.name[:20]:<20} {n.num_examples:>8} "
                f"{_fmt(n.train_loss):>8} {_fmt(n.update_norm):>9} "
                f"{n.bytes_up / 1024:>8.1f} {n.bytes_down / 1024:>8.1f} "
                f"{_fmt(n.heldout_before):>9} {_fmt(n.heldout_after):>9}"
                + (f"  ERROR {n.error}" if n.error else "") + (f"  {note}" if note else ""))
        t = rep.timing
        lines.append(
            f"{rep.round:>5} {'= ' + rep.mode:<20} residual={_fmt(rep.residual, '.2e')} "
            f"fedavg_error={_fmt(rep.fedavg_error, '.2e')} "
            f"ll {_fmt(rep.heldout_mean('before'))} -> {_fmt(rep.heldout_mean('after'))} "
            f"version={rep.version}")
        lines.append(
            f"{'':>5} {'  time (s)':<20} train-exchange={t.train_exchange:.1f} "
            f"local-train={t.local_training_max:.1f} aggregation={t.aggregation:.3f} "
            f"evaluate-exchange={t.evaluate_exchange:.1f} messaging={t.messaging:.1f}")
    return "\n".join(lines)
