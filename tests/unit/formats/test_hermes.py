"""Hermes/ShareGPT records <-> the trajectory shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings

from hermes_fed.errors import FormatError
from hermes_fed.formats.hermes import from_hermes, to_hermes
from hermes_fed.formats.trajectory import trajectory_problem

from .conftest import SAMPLE, trajectories

# The Nous Hermes function-calling data writes tool calls as Python literals.
NOUS_RECORD = {
    "id": "abc",
    "category": "finance",
    "conversations": [
        {"from": "system", "value": "You call functions. <tools> [{'type': 'function', "
         "'function': {'name': 'get_price', 'description': 'price of a stock', "
         "'parameters': {'type': 'object'}}}] </tools>"},
        {"from": "human", "value": "Price of TSLA?"},
        {"from": "gpt", "value": "<think>I need the price tool</think>\n<tool_call>\n"
         "{'arguments': {'symbol': 'TSLA'}, 'name': 'get_price'}\n</tool_call>"},
        {"from": "tool", "value": "<tool_response>\n{\"name\": \"get_price\", "
         "\"content\": {\"price\": 250}}\n</tool_response>"},
        {"from": "gpt", "value": "TSLA trades at 250."},
    ],
}


def test_nous_record_parses_into_the_shared_shape() -> None:
    # Execute
    trajectory = from_hermes(NOUS_RECORD)

    # Assert
    assert trajectory_problem(trajectory) is None
    assert trajectory["trajectory_id"] == "t-abc"
    assert trajectory["task"] == "Price of TSLA?"
    assert trajectory["task_type"] == "finance"
    assert trajectory["final_response"] == "TSLA trades at 250."
    assert trajectory["tools"] == [{"name": "get_price", "description": "price of a stock",
                                    "parameters": {"type": "object"}}]
    call_turn = trajectory["messages"][2]
    assert call_turn == {"role": "assistant", "content": "", "reasoning": "I need the price tool",
                         "tool_calls": [{"id": "call_1", "name": "get_price",
                                         "arguments": {"symbol": "TSLA"}}]}
    assert trajectory["messages"][3] == {"role": "tool", "tool_call_id": "call_1",
                                         "name": "get_price", "content": '{"price": 250}'}


def test_two_results_in_one_turn_answer_their_calls_by_name() -> None:
    # Prepare
    record = {"conversations": [
        {"from": "human", "value": "weather and time?"},
        {"from": "gpt", "value": '<tool_call>{"name": "weather", "arguments": {}}</tool_call>'
                                 '<tool_call>{"name": "clock", "arguments": {}}</tool_call>'},
        {"from": "tool", "value": '<tool_response>{"name": "clock", "content": "noon"}'
                                  '</tool_response><tool_response>{"name": "weather", '
                                  '"content": "sun"}</tool_response>'},
        {"from": "gpt", "value": "sun at noon"},
    ]}

    # Execute
    messages = from_hermes(record)["messages"]

    # Assert
    assert [(m["tool_call_id"], m["content"]) for m in messages[2:4]] == [
        ("call_2", "noon"), ("call_1", "sun")]


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ([], "<record>"),
        ({"conversations": []}, "conversations"),
        ({"conversations": [{"from": "robot", "value": "x"}]}, "conversations[0].from"),
        ({"conversations": [{"from": "human", "value": 3}]}, "conversations[0].value"),
        ({"conversations": [{"from": "human", "value": "q"},
                            {"from": "gpt", "value": "<tool_call>not json</tool_call>"}]},
         "conversations[1].value<tool_call>"),
        ({"conversations": [{"from": "human", "value": "q"},
                            {"from": "gpt", "value": '<tool_call>{"name": "f", "arguments": [1]}'
                                                     "</tool_call>"}]},
         "conversations[1].value<tool_call>.arguments"),
        ({"conversations": [{"from": "human", "value": "q"},
                            {"from": "tool", "value": "<tool_response>1</tool_response>"}]},
         "conversations[1].value"),
        ({"conversations": [{"from": "human", "value": "q"}], "tools": "{bad"}, "tools"),
    ],
)
def test_bad_records_name_the_field(record: Any, field: str) -> None:
    # Execute
    with pytest.raises(FormatError) as caught:
        from_hermes(record)

    # Assert
    assert str(caught.value).startswith(field + ":")


def test_export_writes_tags_and_tools_field() -> None:
    # Execute
    record = to_hermes(SAMPLE)

    # Assert
    values = [t["value"] for t in record["conversations"]]
    assert [t["from"] for t in record["conversations"]] == ["system", "human", "gpt", "tool", "gpt"]
    assert "<think>\nuse the calculator\n</think>" in values[2]
    assert '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+3"}}' in values[2]
    assert json.loads(values[3].split("\n")[1]) == {"name": "calculator", "content": {"result": 5}}
    assert json.loads(record["tools"]) == SAMPLE["tools"]


@settings(max_examples=60, deadline=None)
@given(trajectories())
def test_round_trip_is_identity(trajectory: dict[str, Any]) -> None:
    # Execute
    back = from_hermes(json.loads(json.dumps(to_hermes(trajectory))))

    # Assert
    assert back == trajectory
