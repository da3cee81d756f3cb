"""Preference pairs: a task retried and later accepted within a session.

For DPO-style training (Rafailov et al., 2023, arXiv 2305.18290) a pair is
``(rejected, chosen)``: ``rejected`` got a ``RetryRequested`` and was never accepted,
``chosen`` is the first *later* trajectory of the same session and the same task (the
normalised task text, compared by hash) that was accepted. Each rejected trajectory pairs
with one chosen trajectory; a chain ``r1, r2 -> c`` gives ``(r1, c)`` and ``(r2, c)``.
A trajectory that was both retried and accepted counts as accepted (the user settled on it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from .minhash import normalise


def task_key(task: str) -> str:
    """A stable key for "the same task" that keeps no text: SHA-256 of the normalised task."""
    return hashlib.sha256(normalise(task).encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class SessionTrajectory:
    """What pairing needs to know about one recorded trajectory."""

    trajectory_id: str
    session_id: str
    order: int
    task_key: str
    retried: bool
    accepted: bool


@dataclass(frozen=True, slots=True)
class PreferencePair:
    session_id: str
    rejected_id: str
    chosen_id: str
    task_key: str


def preference_pairs(trajectories: Iterable[SessionTrajectory]) -> list[PreferencePair]:
    """All ``(rejected, chosen)`` pairs, sorted by session, then rejected id."""
    groups: dict[tuple[str, str], list[SessionTrajectory]] = {}
    for t in trajectories:
        groups.setdefault((t.session_id, t.task_key), []).append(t)
    pairs: list[PreferencePair] = []
    for (session_id, key), members in groups.items():
        members.sort(key=lambda t: (t.order, t.trajectory_id))
        waiting: list[SessionTrajectory] = []
        for t in members:
            if t.accepted:
                pairs.extend(PreferencePair(session_id, r.trajectory_id, t.trajectory_id, key)
                             for r in waiting)
                waiting = []
            elif t.retried:
                waiting.append(t)
    pairs.sort(key=lambda p: (p.session_id, p.rejected_id))
    return pairs
