"""Scores: the implicit-feedback score and the combined score, each with its terms.

Pure functions over records. Every score carries the terms that produced it, so an operator
can audit why a trajectory landed in its tier (``ImplicitScore.explain()``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .config import CombineWeights, ImplicitWeights
from .signals import TrajectorySignals


@dataclass(frozen=True, slots=True)
class ScoreTerm:
    """One additive term of a score: its name, its contribution and why it applies."""

    name: str
    value: float
    reason: str


@dataclass(frozen=True, slots=True)
class ImplicitScore:
    """The implicit-feedback score of a trajectory, in [-1, 1]."""

    trajectory_id: str
    score: float
    raw: float
    terms: tuple[ScoreTerm, ...]

    @property
    def clamped(self) -> bool:
        return self.raw != self.score

    def explain(self) -> str:
        parts = [f"{t.name} {t.value:+.3f} ({t.reason})" for t in self.terms]
        tail = f" = {self.raw:+.3f}" + (f" -> clamped {self.score:+.3f}" if self.clamped else "")
        return " ".join(parts) + tail


def clamp_score(value: float) -> float:
    """Clamp to [-1, 1]; NaN is refused (a NaN score must never reach a tier)."""
    if math.isnan(value):
        raise ValueError("score is NaN")
    return min(1.0, max(-1.0, value))


def implicit_score(signals: TrajectorySignals,
                   weights: ImplicitWeights | None = None) -> ImplicitScore:
    """The implicit score of DESIGN.md §5.

    ``0.5 ±0.3 (accepted / not) +0.1 (no retry) -0.2 (>= 3 retries) -0.3 * edit_ratio
    +0.1 (continued) -0.4 (error reported)``, clamped to [-1, 1]; every weight comes from
    ``weights``. The error penalty applies once, however many errors were reported.
    """
    w = weights or ImplicitWeights()
    terms = [ScoreTerm("base", w.base, "prior")]
    if signals.accepted:
        terms.append(ScoreTerm("accepted", w.accepted, "output accepted"))
    else:
        terms.append(ScoreTerm("not_accepted", -w.accepted, "no acceptance seen"))
    if signals.retries == 0:
        terms.append(ScoreTerm("no_retry", w.no_retry, "no retry requested"))
    elif signals.retries >= w.many_retries_at:
        terms.append(ScoreTerm("many_retries", w.many_retries,
                               f"{signals.retries} retries >= {w.many_retries_at}"))
    if signals.edits:
        terms.append(ScoreTerm("edited", w.edit * signals.edit_ratio,
                               f"largest edit ratio {signals.edit_ratio:.3f} of "
                               f"{signals.edits} edit(s)"))
    if signals.continued:
        terms.append(ScoreTerm("continued", w.continued, "session continued"))
    if signals.errors:
        terms.append(ScoreTerm("error", w.error, f"{signals.errors} error report(s)"))
    raw = math.fsum(t.value for t in terms)
    return ImplicitScore(signals.trajectory_id, clamp_score(raw), raw, tuple(terms))


def has_feedback(signals: TrajectorySignals) -> bool:
    """Whether any user reacted to the trajectory (acceptance, retry, edit, continuation,
    error report)."""
    return bool(signals.accepted or signals.retries or signals.edits or signals.continued
                or signals.errors)


def users_rejected(signals: TrajectorySignals) -> bool:
    """Users retried, edited (a non-zero ratio) or reported an error: evidence against the
    answer, which judges may not outweigh (``CombineWeights.judges_never_lift_rejected``)."""
    return bool(signals.retries or signals.edit_ratio > 0 or signals.errors)


def implicit_with_prior(signals: TrajectorySignals, weights: ImplicitWeights | None = None,
                        prior: float | None = None) -> ImplicitScore:
    """:func:`implicit_score`, except that a curated trajectory (``prior`` set) that no user
    has reacted to scores ``prior``: an import carries no feedback, and its silence is the
    deployer's vouching, not a user's indifference."""
    if prior is None or has_feedback(signals):
        return implicit_score(signals, weights)
    value = clamp_score(prior)
    term = ScoreTerm("curated_prior", value, "curated import, no user feedback")
    return ImplicitScore(signals.trajectory_id, value, float(prior), (term,))


def implicit_value(signals: TrajectorySignals, weights: ImplicitWeights) -> float:
    """:func:`implicit_score`'s ``score`` without building its terms (the projection's hot
    path; a property test keeps the two equal)."""
    w = weights
    raw = [w.base, w.accepted if signals.accepted else -w.accepted]
    if signals.retries == 0:
        raw.append(w.no_retry)
    elif signals.retries >= w.many_retries_at:
        raw.append(w.many_retries)
    if signals.edits:
        raw.append(w.edit * signals.edit_ratio)
    if signals.continued:
        raw.append(w.continued)
    if signals.errors:
        raw.append(w.error)
    return clamp_score(math.fsum(raw))


@dataclass(frozen=True, slots=True)
class CombinedScore:
    """The fused score and where it came from (``human``, ``fused`` or ``implicit``)."""

    score: float
    source: str
    terms: tuple[ScoreTerm, ...]


def combined_score(implicit: float, judge_scores: Mapping[str, float] | None = None,
                   human: float | None = None,
                   weights: CombineWeights | None = None, *,
                   rejected: bool = False, tool_error: bool = False) -> CombinedScore:
    """Fuse the implicit score, judge scores and a human label.

    A human label wins outright when ``weights.human_wins`` (it is clamped to [-1, 1]).
    Otherwise the result is the weighted mean of the implicit score and the mean of the
    judge scores (judges score in [0, 1], on the same "1 is best" scale), with the weights
    renormalised over the parts that are present; no judges means the implicit score alone.
    Then: when users ``rejected`` the answer (retried, edited, reported an error) and
    ``weights.judges_never_lift_rejected``, the result is at most the implicit score; and a
    ``tool_error`` (the last tool result is an error) subtracts ``weights.tool_error``.
    """
    w = weights or CombineWeights()
    if human is not None and w.human_wins:
        value = clamp_score(human)
        return CombinedScore(value, "human", (ScoreTerm("human", value, "human label wins"),))
    judges = dict(judge_scores or {})
    terms: list[ScoreTerm]
    if not judges or w.judges == 0:
        source, value = "implicit", implicit
        terms = [ScoreTerm("implicit", implicit, "no judges")]
    else:
        source = "fused"
        judge_mean = math.fsum(judges.values()) / len(judges)
        total = w.implicit + w.judges
        terms = [
            ScoreTerm("implicit", implicit * w.implicit / total,
                      f"weight {w.implicit / total:.3f}"),
            ScoreTerm("judges", judge_mean * w.judges / total,
                      f"mean of {len(judges)} judge(s) {judge_mean:.3f}, "
                      f"weight {w.judges / total:.3f}"),
        ]
        value = math.fsum(t.value for t in terms)
        if rejected and w.judges_never_lift_rejected and value > implicit:
            terms.append(ScoreTerm("rejected_cap", implicit - value,
                                   "users retried, edited or reported an error: judges may "
                                   "not raise the implicit score"))
            value = implicit
    if tool_error and w.tool_error:
        terms.append(ScoreTerm("tool_error", -w.tool_error, "the last tool result is an error"))
        value = value - w.tool_error
    return CombinedScore(clamp_score(value), source, tuple(terms))


def combined_value(implicit: float, judge_mean: float | None, human: float | None,
                   weights: CombineWeights, rejected: bool = False,
                   tool_error: bool = False) -> float:
    """:func:`combined_score`'s ``score`` from the judges' mean, without terms (hot path)."""
    if human is not None and weights.human_wins:
        return clamp_score(human)
    value = implicit
    if judge_mean is not None and weights.judges != 0:
        total = weights.implicit + weights.judges
        value = math.fsum((implicit * weights.implicit / total,
                           judge_mean * weights.judges / total))
        if rejected and weights.judges_never_lift_rejected and value > implicit:
            value = implicit
    if tool_error and weights.tool_error:
        value = value - weights.tool_error
    return clamp_score(value)
