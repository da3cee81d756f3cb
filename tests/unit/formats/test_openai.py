"""OpenAI chat-completions records <-> the trajectory shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings

from hermes_fed.errors import FormatError
from hermes_fed.formats.openai import from_openai, to_openai
from hermes_fed.formats.trajectory import trajectory_problem

from .conftest import SAMPLE, trajectories

RECORD = {
    "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "2+"}, {"type": "text", "text": "3?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c9", "type": "function",
             "function": {"name": "calculator", "arguments": "{\"expression\": \"2+3\"}"}}]},
        {"role": "tool", "tool_call_id": "c9", "content": "5"},
        {"role": "assistant", "content": "5"},
    ],
    "tools": [{"type": "function", "function": {"name": "calculator", "parameters": {}}}],
}


def test_chat_completion_record_parses_into_the_shared_shape() -> None:
    # Execute
    trajectory = from_openai(RECORD)

    # Assert
    assert trajectory_problem(trajectory) is None
    assert trajectory["trajectory_id"].startswith("t-") and len(trajectory["trajectory_id"]) == 22
    assert trajectory["task"] == "2+3?"
    assert trajectory["messages"][0] == {"role": "system", "content": "Be brief."}
    assert trajectory["messages"][2]["tool_calls"] == [
        {"id": "c9", "name": "calculator", "arguments": {"expression": "2+3"}}]
    assert trajectory["messages"][3] == {"role": "tool", "content": "5", "tool_call_id": "c9",
                                         "name": "calculator"}
    assert trajectory["final_response"] == "5"


def test_content_hash_id_is_stable() -> None:
    # Execute / Assert
    assert from_openai(RECORD)["trajectory_id"] == from_openai(json.loads(json.dumps(RECORD)))[
        "trajectory_id"]


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(json.dumps(RECORD))
    target: Any = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return record


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ("x", "<record>"),
        ({"messages": []}, "messages"),
        (_with(["messages", 0, "role"], "bot"), "messages[0].role"),
        (_with(["messages", 0, "content"], 7), "messages[0].content"),
        (_with(["messages", 2, "tool_calls", 0, "function", "arguments"], "{oops"),
         "messages[2].tool_calls[0].function.arguments"),
        (_with(["messages", 2, "tool_calls", 0, "function", "arguments"], "[1]"),
         "messages[2].tool_calls[0].function.arguments"),
        (_with(["messages", 2, "tool_calls", 0, "id"], ""), "messages[2].tool_calls[0].id"),
        (_with(["messages", 3, "tool_call_id"], "nope"), "messages[3].tool_call_id"),
        (_with(["tools", 0, "function"], {"name": 3}), "tools[0].function.name"),
    ],
)
def test_bad_records_name_the_field(record: Any, field: str) -> None:
    # Execute
    with pytest.raises(FormatError) as caught:
        from_openai(record)

    # Assert
    assert str(caught.value).startswith(field + ":")


def test_export_encodes_arguments_as_json_strings() -> None:
    # Execute
    record = to_openai(SAMPLE)

    # Assert
    call = record["messages"][2]
    assert call["content"] is None and call["reasoning_content"] == "use the calculator"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {"expression": "2+3"}
    assert record["tools"][0] == {"type": "function", "function": SAMPLE["tools"][0]}


@settings(max_examples=60, deadline=None)
@given(trajectories())
def test_round_trip_is_identity(trajectory: dict[str, Any]) -> None:
    # Execute
    back = from_openai(json.loads(json.dumps(to_openai(trajectory))))

    # Assert
    assert back == trajectory
