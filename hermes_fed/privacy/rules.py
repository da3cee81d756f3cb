"""Gated rule recognizers: presidio ``EntityRecognizer`` plugins that carry their data.

A recognizer holds a *gate* (literal substrings or one cheap regex) and a tuple of
:class:`Rule` (a regex, the group that is the entity, a score, a validation hook). When the
gate does not occur in a text the recognizer returns at once; this pre-filter is where most
of the speed over stock presidio comes from (FIELD_NOTES: stock spends ~7-10 ms per
700-char document, 74 % of it in the phone recognizer scanning every text).

Invariant R1: a gate is a necessary condition of every rule of its recognizer, so gating
never changes what a recognizer finds, only how fast it finds nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from hermes_fed.privacy.offline import import_presidio

import_presidio()

from presidio_analyzer import (  # noqa: E402
    AnalysisExplanation,
    EntityRecognizer,
    RecognizerResult,
)

#: Validation hook: the matched span's text -> a score, or None to reject the match.
Validator = Callable[[str], float | None]


@dataclass(frozen=True, slots=True)
class Rule:
    """One detection rule.

    Attributes
    ----------
    name
        Rule id, reported in the analysis explanation (never the matched value).
    entity
        The entity type a match of this rule is.
    regex
        Compiled pattern.
    score
        Score of a match that passes validation (a validator may return another score).
    group
        Group whose span is the entity (0 = the whole match); when it did not take part in
        the match the first non-empty group is used (detect-secrets' convention).
    validate
        Optional hook on the span text; None rejects.
    extend
        Characters (a regex class body) over which the span is extended to the right, so a
        token longer than the rule's fixed length is never half-redacted.
    strip
        Characters trimmed from the end of the span after extension (a sentence's period).
    """

    name: str
    entity: str
    regex: re.Pattern[str]
    score: float
    group: int = 0
    validate: Validator | None = None
    extend: str | None = None
    strip: str = ""


class Gate:
    """A cheap necessary condition: any of some literals (optionally case-folded), or a regex."""

    __slots__ = ("_fold", "_literals", "_regex")

    def __init__(
        self,
        literals: Sequence[str] = (),
        *,
        regex: str | None = None,
        fold_case: bool = False,
    ) -> None:
        self._fold = fold_case
        self._literals = tuple(s.lower() for s in literals) if fold_case else tuple(literals)
        self._regex = re.compile(regex) if regex is not None else None

    def open(self, text: str, folded: str) -> bool:
        """Whether the text may contain a match; ``folded`` is ``text.lower()``."""
        if self._regex is not None and self._regex.search(text) is not None:
            return True
        haystack = folded if self._fold else text
        return any(lit in haystack for lit in self._literals)


_EXTENDERS: dict[str, re.Pattern[str]] = {}


def _extend_end(text: str, end: int, chars: str) -> int:
    pattern = _EXTENDERS.get(chars)
    if pattern is None:
        pattern = _EXTENDERS.setdefault(chars, re.compile(f"[{chars}]*"))
    m = pattern.match(text, end)
    return m.end() if m is not None else end


def _span(match: re.Match[str], group: int) -> tuple[int, int] | None:
    if group and match.group(group) is not None:
        return match.span(group)
    if group == 0 and match.re.groups == 0:
        return match.span()
    # detect-secrets convention: the first group that took part, else the whole match
    for g in range(1, (match.re.groups or 0) + 1):
        if match.group(g):
            return match.span(g)
    return match.span() if match.group(0) else None


class RuleRecognizer(EntityRecognizer):
    """A presidio recognizer made of a gate and rules (see module docstring)."""

    def __init__(self, name: str, gate: Gate | None, rules: Sequence[Rule]) -> None:
        entities = sorted({r.entity for r in rules})
        super().__init__(supported_entities=entities, name=name, supported_language="en")
        self.label: str = name
        self.gate = gate
        self.rules = tuple(rules)

    def load(self) -> None:  # nothing to load: patterns are compiled at construction
        return None

    def find(self, text: str, folded: str | None = None) -> list[RecognizerResult]:
        """Run the gate and the rules; the fast path used by :class:`Detector`."""
        if self.gate is not None and not self.gate.open(
            text, folded if folded is not None else text.lower()
        ):
            return []
        out: list[RecognizerResult] = []
        for rule in self.rules:
            for match in rule.regex.finditer(text):
                span = _span(match, rule.group)
                if span is None:
                    continue
                start, end = span
                if rule.extend is not None:
                    end = _extend_end(text, end, rule.extend)
                while rule.strip and end > start and text[end - 1] in rule.strip:
                    end -= 1
                score: float | None = rule.score
                if rule.validate is not None:
                    score = rule.validate(text[start:end])
                if score is None or end <= start:
                    continue
                out.append(self._result(rule, start, end, score))
        return out

    def _result(self, rule: Rule, start: int, end: int, score: float) -> RecognizerResult:
        explanation = AnalysisExplanation(
            recognizer=self.label, original_score=score, pattern_name=rule.name
        )
        return RecognizerResult(
            entity_type=rule.entity, start=start, end=end, score=score,
            analysis_explanation=explanation,
            recognition_metadata={
                RecognizerResult.RECOGNIZER_NAME_KEY: self.label,
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
            },
        )

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None
    ) -> list[RecognizerResult]:
        """presidio entry point (``AnalyzerEngine`` calls this)."""
        return [r for r in self.find(text) if not entities or r.entity_type in entities]


class GatedRecognizer(EntityRecognizer):
    """Wrap a stock presidio recognizer behind a gate (same name, same results)."""

    def __init__(self, inner: EntityRecognizer, gate: Gate | None) -> None:
        name = str(getattr(inner, "name", type(inner).__name__))
        super().__init__(
            supported_entities=list(inner.supported_entities), name=name,
            supported_language=inner.supported_language,
        )
        self.label: str = name
        self.inner = inner
        self.gate = gate

    def load(self) -> None:
        return None

    def find(self, text: str, folded: str | None = None) -> list[RecognizerResult]:
        if self.gate is not None and not self.gate.open(
            text, folded if folded is not None else text.lower()
        ):
            return []
        results: list[RecognizerResult] = self.inner.analyze(
            text, self.inner.supported_entities, cast(Any, None)
        )
        for r in results:
            r.recognition_metadata = {
                **(r.recognition_metadata or {}),
                RecognizerResult.RECOGNIZER_NAME_KEY: self.label,
            }
        return results

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None
    ) -> list[RecognizerResult]:
        return [r for r in self.find(text) if not entities or r.entity_type in entities]


class GroupScanRecognizer(RuleRecognizer):
    """Candidates made of separated digit groups (phones, cards), judged window by window.

    A candidate regex (possessive, so it cannot backtrack exponentially) finds maximal runs
    of groups; windows of whole groups are tried left to right, longest first, and the scan
    resumes after each accepted window. ``1706705979341 020 7946 0054`` is then an id and a
    London number. Invariant R2 (idempotence): the decision at a group depends only on the
    groups to its right within the run, so re-scanning redacted text finds nothing new.
    """

    def __init__(self, name: str, gate: Gate | None, rule: Rule,
                 group: re.Pattern[str], max_groups: int) -> None:
        super().__init__(name, gate, [rule])
        self.group = group
        self.max_groups = max_groups

    def find(self, text: str, folded: str | None = None) -> list[RecognizerResult]:
        if self.gate is not None and not self.gate.open(
            text, folded if folded is not None else text.lower()
        ):
            return []
        rule = self.rules[0]
        assert rule.validate is not None
        out: list[RecognizerResult] = []
        for match in rule.regex.finditer(text):
            candidate, base = match.group(0), match.start()
            groups = [m.span() for m in self.group.finditer(candidate)]
            i = 0
            while i < len(groups):
                for j in range(min(len(groups), i + self.max_groups), i, -1):
                    start, end = groups[i][0], groups[j - 1][1]
                    score = rule.validate(candidate[start:end])
                    if score is not None:
                        out.append(self._result(rule, base + start, base + end, score))
                        i = j
                        break
                else:
                    i += 1
        return out
