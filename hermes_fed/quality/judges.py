"""Judges: score a recorded trajectory in [0, 1] (1 is best) with an auditable rationale.

Two offline judges run anywhere: :class:`RuleBasedJudge` checks the trajectory's structure
and :class:`AgreementJudge` checks that the final answer agrees with the last tool result.
``http_judge.OpenAICompatibleJudge`` asks a chat/completions endpoint. A judge may abstain
(``None``) when it has nothing to say, e.g. the agreement judge on a trajectory without
tools. Rationales name checks and counts, never values from the trajectory: they are
stored in ``TrajectoryJudged``, which is not a personal field.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

from hermes_fed.events.session import TrajectoryJudged, TrajectoryRecorded


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check of a judge; ``passed`` is None when the check does not apply."""

    name: str
    passed: bool | None
    detail: str


@dataclass(frozen=True, slots=True)
class JudgeVerdict:
    judge: str
    trajectory_id: str
    score: float
    rationale: str
    checks: tuple[CheckResult, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"JudgeVerdict.score must be in [0, 1], got {self.score!r}")

    def to_event(self) -> TrajectoryJudged:
        # The catalog's event_type decorator is no dataclass_transform, hence the ignore.
        return TrajectoryJudged(trajectory_id=self.trajectory_id,
                                judge=self.judge, score=self.score, rationale=self.rationale)


class Judge(ABC):
    """A trajectory judge; ``name`` goes into ``TrajectoryJudged.judge``."""

    name: str

    @abstractmethod
    def judge(self, trajectory: TrajectoryRecorded) -> JudgeVerdict | None:
        """Score ``trajectory`` in [0, 1], or ``None`` to abstain."""


# --- trajectory parsing -------------------------------------------------------------------
def _call_name_and_arguments(call: Any) -> tuple[Any, Any]:
    if not isinstance(call, Mapping):
        return None, None
    function = call.get("function")
    if isinstance(function, Mapping):  # OpenAI wire shape {"function": {"name", "arguments"}}
        return function.get("name"), function.get("arguments")
    return call.get("name"), call.get("arguments")


def _arguments_object(arguments: Any) -> bool:
    if isinstance(arguments, Mapping):
        return True
    if isinstance(arguments, str):  # OpenAI sends arguments as a JSON string
        try:
            return isinstance(json.loads(arguments), dict)
        except ValueError:
            return False
    return False


def _tool_calls(messages: Sequence[Mapping[str, Any]]) -> Iterator[tuple[int, Any]]:
    for index, message in enumerate(messages):
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or ():
                yield index, call


def _declared_names(tools: Sequence[Mapping[str, Any]]) -> set[str]:
    names = set()
    for tool in tools:
        function = tool.get("function")
        name = function.get("name") if isinstance(function, Mapping) else tool.get("name")
        if isinstance(name, str):
            names.add(name)
    return names


def parse_tool_content(content: Any) -> Any:
    """A tool result's content: parsed JSON when it is JSON text, else the raw value."""
    if isinstance(content, str):
        try:
            return json.loads(content)
        except ValueError:
            return content
    return content


_ERROR_TEXT = re.compile(r"^\s*(error\b|exception\b|traceback\b|failed\b)", re.IGNORECASE)
_ACKNOWLEDGES = re.compile(
    r"\b(error|errors|fail(ed|ure|s)?|unable|could ?n[o']t|cannot|can'?t|sorry|"
    r"unfortunately|problem|unavailable)\b",
    re.IGNORECASE,
)


def is_tool_error(message: Mapping[str, Any]) -> bool:
    """A tool result reporting failure: ``is_error``, an ``error`` key, or error text."""
    if message.get("is_error") is True:
        return True
    content = parse_tool_content(message.get("content"))
    if isinstance(content, Mapping):
        status = content.get("status")
        return bool(content.get("error")) or (isinstance(status, str)
                                              and status.lower() in {"error", "failed"})
    return isinstance(content, str) and bool(_ERROR_TEXT.match(content))


class RuleBasedJudge(Judge):
    """Structural checks; the score is the share of applicable checks that pass.

    Checks: tool calls are well-formed (a name and JSON-object arguments), tool names are
    among the declared tools, every tool result answers a call made before it, no tool
    error is left unhandled (a later tool call retries, or the final response acknowledges
    the failure), and a non-empty final response exists.
    """

    name = "rules"

    def judge(self, trajectory: TrajectoryRecorded) -> JudgeVerdict:
        checks = self.checks(trajectory)
        applicable = [c for c in checks if c.passed is not None]
        passed = [c for c in applicable if c.passed]
        score = len(passed) / len(applicable)
        failed = [c.name for c in applicable if not c.passed]
        rationale = f"{len(passed)}/{len(applicable)} checks passed"
        if failed:
            rationale += "; failed: " + ", ".join(failed)
        return JudgeVerdict(self.name, trajectory.trajectory_id, score, rationale,
                            tuple(checks))

    def checks(self, trajectory: TrajectoryRecorded) -> list[CheckResult]:
        messages = [m for m in trajectory.messages if isinstance(m, Mapping)]
        calls = list(_tool_calls(messages))
        declared = _declared_names(trajectory.tools)
        out: list[CheckResult] = []

        malformed = sum(1 for _, call in calls
                        if not (isinstance(_call_name_and_arguments(call)[0], str)
                                and _call_name_and_arguments(call)[0]
                                and _arguments_object(_call_name_and_arguments(call)[1])))
        out.append(CheckResult(
            "tool_calls_well_formed", None if not calls else malformed == 0,
            f"{malformed} of {len(calls)} tool calls malformed"))

        undeclared = sum(1 for _, call in calls
                         if _call_name_and_arguments(call)[0] not in declared)
        out.append(CheckResult(
            "tool_names_declared", None if not calls else undeclared == 0,
            f"{undeclared} of {len(calls)} tool calls name an undeclared tool"))

        seen_ids: set[str] = set()
        unmatched = 0
        results = 0
        for message in messages:
            if message.get("role") == "assistant":
                for call in message.get("tool_calls") or ():
                    if isinstance(call, Mapping) and isinstance(call.get("id"), str):
                        seen_ids.add(call["id"])
            elif message.get("role") == "tool":
                results += 1
                if message.get("tool_call_id") not in seen_ids:
                    unmatched += 1
        out.append(CheckResult(
            "tool_results_matched", None if not results else unmatched == 0,
            f"{unmatched} of {results} tool results answer no earlier call"))

        errors = [i for i, m in enumerate(messages) if m.get("role") == "tool"
                  and is_tool_error(m)]
        unhandled = 0
        acknowledged = bool(_ACKNOWLEDGES.search(trajectory.final_response or ""))
        for index in errors:
            retried = any(i > index for i, _ in calls)
            if not (retried or acknowledged):
                unhandled += 1
        out.append(CheckResult(
            "tool_errors_handled", None if not errors else unhandled == 0,
            f"{unhandled} of {len(errors)} tool errors neither retried nor acknowledged"))

        has_final = bool((trajectory.final_response or "").strip())
        out.append(CheckResult("final_response_exists", has_final,
                               "final response present" if has_final else "no final response"))
        return out


# The checks that mark a trajectory as the agent visibly failing with its tools: never
# training data, whatever the user's feedback said (a user who says nothing leaves a
# broken call at the silver floor).
STRUCTURAL_FAILURES = ("tool_calls_well_formed", "tool_names_declared", "tool_errors_handled")
# A call the agent wrote as text instead of making it: the final answer *is* the call
# (`{"name": "send_user", "arguments": ...}` or a `<tool_call>` fragment). It has no
# tool_calls entry, so the checks above do not apply; a user who accepts it by mistake
# makes it platinum, and six such trajectories at weight 5 taught a demo node to answer in
# unexecuted JSON.
_CALL_AS_TEXT = re.compile(r'<tool_call>|\{\s*"name"\s*:')


def structural_failures(trajectory: Mapping[str, Any]) -> list[str]:
    """Names of the structural checks a trajectory (its event data) fails."""
    view = SimpleNamespace(messages=trajectory.get("messages") or [],
                           tools=trajectory.get("tools") or [],
                           final_response=trajectory.get("final_response") or "")
    checks = RuleBasedJudge().checks(cast(TrajectoryRecorded, view))
    failed = [c.name for c in checks if c.name in STRUCTURAL_FAILURES and c.passed is False]
    if trajectory.get("tools") and _CALL_AS_TEXT.search(str(view.final_response)):
        failed.append("tool_call_as_text")
    return failed


def broken_trajectories(trajectories: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Ids of the trajectories (id -> event data) that fail a structural check."""
    return {tid for tid, t in trajectories.items() if structural_failures(t)}


_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _numbers_in(text: str) -> list[tuple[float, int]]:
    """Numbers in ``text`` with their count of decimals (``1,234.50`` -> (1234.5, 2))."""
    out = []
    for match in _NUMBER.finditer(text):
        raw = match.group().replace(",", "")
        try:
            value = float(raw)
        except ValueError:
            continue
        mantissa = raw.lower().split("e")[0]
        decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
        out.append((value, decimals))
    return out


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


class AgreementJudge(Judge):
    """The final answer agrees with the last tool result.

    Values are the leaves of the last tool result (JSON) or the numbers in it (text).
    Numbers count when the final response states them to its own precision (3.14159 is
    matched by "3.14"; 1234 by "1,234"); strings (1..80 characters) when they appear
    case-insensitively. Numeric values take precedence over strings when both exist.
    Numbers of the final response that echo the task are discounted once per occurrence
    in the task, so "0+1 = -1" does not agree with a result of 1.
    The score is ``min(1, matched / min(len(values), required_values))``: quoting
    ``required_values`` of a large result is full agreement. Abstains without a tool
    result, on an error result, or when the result has no comparable values.
    """

    name = "agreement"

    def __init__(self, required_values: int = 3) -> None:
        if required_values < 1:
            raise ValueError(f"AgreementJudge.required_values must be >= 1, got "
                             f"{required_values!r}")
        self.required_values = required_values

    def judge(self, trajectory: TrajectoryRecorded) -> JudgeVerdict | None:
        tool_messages = [m for m in trajectory.messages
                         if isinstance(m, Mapping) and m.get("role") == "tool"]
        if not tool_messages or is_tool_error(tool_messages[-1]):
            return None
        content = parse_tool_content(tool_messages[-1].get("content"))
        if isinstance(content, str):
            numbers = [v for v, _ in _numbers_in(content)]
            strings: list[str] = []
        else:
            leaves = list(_leaves(content))
            numbers = [float(v) for v in leaves
                       if isinstance(v, int | float) and not isinstance(v, bool)]
            strings = [v.strip() for v in leaves
                       if isinstance(v, str) and 0 < len(v.strip()) <= 80]
        final = trajectory.final_response or ""
        if numbers:
            stated = _numbers_in(final)
            # Numbers that merely echo the task ("0+1 = -1" restates 0 and 1) are removed
            # once per occurrence in the task, so only what the answer adds can agree.
            for echoed, _ in _numbers_in(trajectory.task or ""):
                for k, (value, _d) in enumerate(stated):
                    if value == echoed:
                        del stated[k]
                        break
            matched = sum(1 for v in numbers if any(_agrees(v, f, d) for f, d in stated))
            total, kind = len(numbers), "numeric"
        elif strings:
            folded = final.casefold()
            matched = sum(1 for s in strings if s.casefold() in folded)
            total, kind = len(strings), "string"
        else:
            return None
        score = min(1.0, matched / min(total, self.required_values))
        rationale = (f"{matched} of {total} {kind} values of the last tool result appear in "
                     f"the final response (full agreement at {self.required_values})")
        return JudgeVerdict(self.name, trajectory.trajectory_id, score, rationale,
                            (CheckResult("values_agree", matched > 0, rationale),))


def _agrees(value: float, stated: float, decimals: int) -> bool:
    tolerance = 0.5 * 10.0 ** (-decimals) + 1e-9 * max(1.0, abs(value))
    return abs(value - stated) <= tolerance
