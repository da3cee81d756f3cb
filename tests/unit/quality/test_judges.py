"""Offline judges: the rule-based checker and the agreement judge, table-driven."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hermes_fed.events.schema import DEFAULT_CATALOG
from hermes_fed.events.session import TrajectoryRecorded
from hermes_fed.quality.judges import AgreementJudge, JudgeVerdict, RuleBasedJudge

CALC = [{"name": "calculator", "description": "math", "parameters": {"type": "object"}}]


def traj(messages: list[dict[str, Any]], final: str, tools: list[dict[str, Any]] = CALC,
         tid: str = "t-1") -> TrajectoryRecorded:
    return TrajectoryRecorded(trajectory_id=tid, task="q", task_type="arithmetic",
                              messages=messages, tools=tools, final_response=final)


def call(name: str = "calculator", args: Any = None, cid: str = "call_1") -> dict[str, Any]:
    return {"role": "assistant", "content": "",
            "tool_calls": [{"id": cid, "name": name,
                            "arguments": {"expression": "2+3"} if args is None else args}]}


def result(content: Any, cid: str = "call_1") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": cid, "name": "calculator",
            "content": content if isinstance(content, str) else json.dumps(content)}


USER = {"role": "user", "content": "What is 2+3?"}
GOOD = traj([USER, call(), result({"result": 5}), {"role": "assistant", "content": "2+3 = 5"}],
            "2+3 = 5")


# Five checks; those that do not apply (no tool error -> no error check) are not counted.
@pytest.mark.parametrize(
    ("trajectory", "score", "failed"),
    [
        (GOOD, 1.0, []),
        # no tools used at all: only the final-response check applies
        (traj([USER, {"role": "assistant", "content": "5"}], "5"), 1.0, []),
        (traj([USER, {"role": "assistant", "content": ""}], "  "), 0.0,
         ["final_response_exists"]),
        # arguments as a JSON string (OpenAI wire shape) are fine; as a non-object they are not
        (traj([USER, call(args='{"expression": "2+3"}'), result({"result": 5})], "5"), 1.0, []),
        (traj([USER, call(args="[1, 2]"), result({"result": 5})], "5"), 0.75,
         ["tool_calls_well_formed"]),
        (traj([USER, call(args="{not json"), result({"result": 5})], "5"), 0.75,
         ["tool_calls_well_formed"]),
        (traj([USER, call(name="shell"), result({"result": 5})], "5"), 0.75,
         ["tool_names_declared"]),
        (traj([USER, call(), result({"result": 5}, cid="call_9")], "5"), 0.75,
         ["tool_results_matched"]),
        # a tool error followed by a confident answer is unhandled
        (traj([USER, call(), result({"error": "division by zero"})], "The answer is 7."), 0.8,
         ["tool_errors_handled"]),
        # ... acknowledged in the answer, or retried with another call, it is handled
        (traj([USER, call(), result({"error": "boom"})], "Sorry, the calculator failed."),
         1.0, []),
        (traj([USER, call(), result("Error: bad expression"), call(cid="call_2"),
               result({"result": 5}, cid="call_2")], "5"), 1.0, []),
    ],
)
def test_rule_based_judge(trajectory: TrajectoryRecorded, score: float,
                          failed: list[str]) -> None:
    # Execute
    verdict = RuleBasedJudge().judge(trajectory)
    # Assert
    assert verdict.score == pytest.approx(score)
    assert [c.name for c in verdict.checks if c.passed is False] == failed
    for name in failed:
        assert name in verdict.rationale


@pytest.mark.parametrize(
    ("tool_content", "final", "score"),
    [
        ({"result": 5}, "2+3 = 5", 1.0),
        ({"result": 5}, "2+3 = 6", 0.0),
        ({"result": 3.14159}, "About 3.14.", 1.0),
        ({"result": 3.14159}, "About 3.15.", 0.0),
        ({"total": 1234567}, "It is 1,234,567 in all.", 1.0),
        # 2 of 4 values stated; full agreement needs 3 -> 2/3
        ({"high": 21, "low": 12, "wind": 5, "rain": 0.2}, "Between 12 and 21 degrees.", 2 / 3),
        ({"city": "Oslo", "sky": "rain"}, "In oslo expect rain.", 1.0),
        ({"city": "Oslo", "sky": "rain"}, "Sunny in Bergen.", 0.0),
        ("the answer is 42", "It is 42.", 1.0),
    ],
)
def test_agreement_judge(tool_content: Any, final: str, score: float) -> None:
    trajectory = traj([USER, call(), result(tool_content)], final)
    trajectory = TrajectoryRecorded(**{**trajectory.to_data(), "task": "a question"})
    verdict = AgreementJudge().judge(trajectory)
    assert verdict is not None
    assert verdict.score == pytest.approx(score)


@pytest.mark.parametrize(
    ("task", "final", "score"),
    [("What is 0+1?", "0+1 = -1", 0.0), ("What is 0+1?", "0+1 = 1", 1.0),
     ("What is 1*1?", "1*1 = 1", 1.0), ("What is 1*1?", "1*1 is one", 0.0)],
)
def test_agreement_judge_discounts_numbers_echoed_from_the_task(task: str, final: str,
                                                                score: float) -> None:
    trajectory = TrajectoryRecorded(trajectory_id="t", task=task, task_type="a",
                                    messages=[USER, call(), result({"result": 1})], tools=CALC,
                                    final_response=final)
    verdict = AgreementJudge().judge(trajectory)
    assert verdict is not None and verdict.score == score


@pytest.mark.parametrize(
    "trajectory",
    [
        traj([USER, {"role": "assistant", "content": "5"}], "5"),  # no tool result
        traj([USER, call(), result({"error": "x"})], "sorry"),  # error result
        traj([USER, call(), result({"ok": True})], "done"),  # nothing comparable
    ],
)
def test_agreement_judge_abstains(trajectory: TrajectoryRecorded) -> None:
    assert AgreementJudge().judge(trajectory) is None


def test_verdict_becomes_a_valid_event_without_trajectory_values() -> None:
    verdict = AgreementJudge().judge(traj([USER, call(), result({"secret_total": 98765})],
                                          "It is 98765."))
    assert verdict is not None
    data = verdict.to_event().to_data()
    DEFAULT_CATALOG.schema("TrajectoryJudged").validate(data)
    assert "98765" not in data["rationale"]


def test_verdict_score_is_range_checked() -> None:
    with pytest.raises(ValueError, match="score"):
        JudgeVerdict("x", "t", 1.2, "")


def _data(t: TrajectoryRecorded) -> dict[str, Any]:
    return {"trajectory_id": t.trajectory_id, "messages": list(t.messages),
            "tools": list(t.tools), "final_response": t.final_response}


def test_structural_failures_mark_broken_tool_use_only() -> None:
    # Arrange: the agent's typical early failure (a made-up tool, its error, a confident
    # answer), a malformed call, a missing final answer (not structural) and a good one
    from hermes_fed.quality.judges import broken_trajectories, structural_failures

    made_up = traj([USER, call(name="send_user"), result({"error": "unknown tool 'send_user'"})],
                   "The user is 2013-02-18.", tid="made-up")
    malformed = traj([USER, call(args="[1, 2]"), result({"result": 5})], "5", tid="malformed")
    empty = traj([USER, {"role": "assistant", "content": ""}], "  ", tid="empty")
    as_text = '{"name": "send_user", "arguments": {"count": "2007'
    unmade = traj([USER, {"role": "assistant", "content": as_text}], as_text, tid="as-text")
    quoted = traj([USER, {"role": "assistant", "content": "the name is Bo"}], "the name is Bo",
                  tid="quoted")
    cut = '{"name": "close_a_a}}'  # a malformed call cut short: no "arguments" at all
    unmade_cut = traj([USER, {"role": "assistant", "content": cut}], cut, tid="cut")
    cases = (made_up, malformed, empty, unmade, unmade_cut, quoted, GOOD)
    # Execute
    failures = {t.trajectory_id: structural_failures(_data(t)) for t in cases}
    broken = broken_trajectories({t.trajectory_id: _data(t) for t in cases})
    # Assert
    assert failures == {"made-up": ["tool_names_declared", "tool_errors_handled"],
                        "malformed": ["tool_calls_well_formed"], "empty": [],
                        "as-text": ["tool_call_as_text"], "cut": ["tool_call_as_text"],
                        "quoted": [], "t-1": []}
    assert broken == {"made-up", "malformed", "as-text", "cut"}
