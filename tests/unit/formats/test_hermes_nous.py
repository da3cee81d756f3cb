"""Canonical NousResearch hermes-function-calling-v1 rows (issue 21, item 5).

The fixture ``tests/fixtures/hermes_function_calling_v1.jsonl`` holds hand-written rows in
the dataset's layout: the canonical system prompt (whose own phrase "within <tools></tools>
XML tags" is an empty block before the real one), tools only in that prompt as a Python
literal list, a JSON list or one object per line, ``tools`` as a JSON or Python-literal
string, and the ``category`` / ``subcategory`` / ``task`` labels.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hermes_fed.errors import FormatError
from hermes_fed.formats.hermes import from_hermes, hermes_labels
from hermes_fed.formats.importer import import_lines
from hermes_fed.formats.jsonl import BadLine, ParsedLine, parse_jsonl
from hermes_fed.formats.trajectory import trajectory_problem
from hermes_fed.store import Keyring, SqlEventStore, open_store

FIXTURE = Path(__file__).parents[2] / "fixtures" / "hermes_function_calling_v1.jsonl"
PROMPT = ("You are a function calling AI model. You are provided with function signatures "
          "within <tools></tools> XML tags. You may call one or more functions to assist with "
          "the user query. Don't make assumptions about what values to plug into functions.\n")
TAIL = ("\nFor each function call return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags as follows:\n<tool_call>\n"
        "{'arguments': <args-dict>, 'name': <function-name>}\n</tool_call>\n")
WEATHER = {"name": "get_weather", "description": "weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
CLOCK = {"name": "get_time", "description": "time in a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def _rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def _row(tools_block: str, **extra: Any) -> dict[str, Any]:
    return {"id": "x1", "conversations": [
        {"from": "system", "value": PROMPT + "<tools>\n" + tools_block + "\n</tools>" + TAIL},
        {"from": "human", "value": "weather in Oslo?"},
        {"from": "gpt", "value": "<tool_call>\n{'arguments': {'city': 'Oslo'}, 'name': "
                                 "'get_weather'}\n</tool_call>"}], **extra}


def _openai_tool(spec: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": spec}


@pytest.mark.parametrize(("case", "block"), [
    ("JSON list", json.dumps([_openai_tool(WEATHER), _openai_tool(CLOCK)])),
    ("Python-literal list", repr([_openai_tool(WEATHER), _openai_tool(CLOCK)])),
    ("JSON objects one per line",
     json.dumps(_openai_tool(WEATHER)) + "\n" + json.dumps(_openai_tool(CLOCK))),
    ("Python-literal objects one per line",
     repr(_openai_tool(WEATHER)) + "\n" + repr(_openai_tool(CLOCK))),
    ("pretty-printed objects one after the other",
     json.dumps(_openai_tool(WEATHER), indent=2) + "\n" + json.dumps(CLOCK, indent=2)),
])
def test_tools_only_in_the_system_prompt_are_read_after_the_empty_phrase_block(
        case: str, block: str) -> None:
    # Execute
    trajectory = from_hermes(_row(block))

    # Assert: the phrase's empty "<tools></tools>" is not taken for the tools, and the
    # schemas leave the system prompt (the chat template renders the structured tools)
    assert trajectory["tools"] == [WEATHER, CLOCK], case
    assert trajectory_problem(trajectory) is None
    system = trajectory["messages"][0]["content"]
    assert "get_weather" not in system and "get_time" not in system, case
    assert system.startswith(PROMPT) and "within <tools></tools> XML tags" in system


@pytest.mark.parametrize(("case", "tools"), [
    ("JSON string", json.dumps([_openai_tool(WEATHER)])),
    ("Python-literal string", repr([_openai_tool(WEATHER)])),
    ("Python-literal string with True/None", repr([_openai_tool(
        {**WEATHER, "parameters": {"type": "object", "additionalProperties": False,
                                   "default": None}})])),
    ("empty string: the prompt's block", ""),
])
def test_tools_field_as_a_string_is_json_first_then_a_python_literal(
        case: str, tools: str) -> None:
    # Prepare: the prompt names another tool, so we can tell which source was read.
    record = _row(repr([_openai_tool(WEATHER)]), tools=tools)

    # Execute
    trajectory = from_hermes(record)

    # Assert
    assert [t["name"] for t in trajectory["tools"]] == ["get_weather"], case
    assert trajectory_problem(trajectory) is None
    json.dumps(trajectory)  # JSON values only (no tuples, no Python objects)


@pytest.mark.parametrize(("block", "field"), [
    ("[{'name': 'f'", "conversations[0].value<tools>"),
    ("__import__('os').system('true')", "conversations[0].value<tools>"),
    ("[{'name': 'f', 'parameters': {1, 2}}]", "conversations[0].value<tools>"),
    ("[{'description': 'no name'}]", "conversations[0].value<tools>[0]"),
])
def test_a_bad_tools_block_names_the_field_and_runs_nothing(block: str, field: str) -> None:
    # Execute
    with pytest.raises(FormatError) as caught:
        from_hermes(_row(block))

    # Assert
    assert str(caught.value).startswith(field + ":"), caught.value


def test_every_canonical_fixture_row_parses() -> None:
    # Execute
    parsed = list(parse_jsonl(FIXTURE.read_text().splitlines(), "hermes"))

    # Assert
    bad = [p for p in parsed if isinstance(p, BadLine)]
    assert bad == []
    assert len(parsed) == len(_rows()) == 5


def test_canonical_rows_map_to_the_trajectory_shape() -> None:
    # Prepare
    rows = _rows()

    # Execute
    single, multi, parallel, declined, json_mode = (from_hermes(r) for r in rows)

    # Assert: tools from the prompt, the request as the task, the category as task type.
    assert single["trajectory_id"] == f"t-{rows[0]['id']}"
    assert [t["name"] for t in single["tools"]] == ["get_stock_price"]
    assert single["tools"][0]["parameters"]["required"] == ["symbol"]
    assert single["task"] == "What is the current stock price of Apple?"
    assert single["task_type"] == "Stocks and Orders"
    assert single["messages"][-1]["tool_calls"] == [
        {"id": "call_1", "name": "get_stock_price", "arguments": {"symbol": "AAPL"}}]
    assert [t["name"] for t in multi["tools"]] == ["search_flights", "book_flight"]
    assert [m["role"] for m in multi["messages"]] == [
        "system", "user", "assistant", "tool", "assistant", "user", "assistant", "tool",
        "assistant"]
    assert json.loads(multi["messages"][7]["content"])["confirmation"] == "K7Q2ZP"
    assert multi["final_response"].startswith("Your booking is confirmed")
    assert [t["name"] for t in parallel["tools"]] == ["get_weather", "get_local_time"]
    assert [(m["tool_call_id"], m["name"]) for m in parallel["messages"][3:5]] == [
        ("call_1", "get_weather"), ("call_2", "get_local_time")]
    assert declined["tools"][0]["parameters"]["properties"]["passengers"]["minimum"] == 1
    assert json.loads(declined["messages"][3]["content"])["error"] == "card_declined"
    assert json_mode["tools"] == []
    for trajectory in (single, multi, parallel, declined, json_mode):
        assert trajectory_problem(trajectory) is None


def test_category_subcategory_and_task_are_kept_as_labels() -> None:
    # Prepare
    row = _rows()[0]

    # Execute
    labels = hermes_labels(row)

    # Assert
    assert labels == {"category": "Stocks and Orders", "subcategory": "Stock Price Queries",
                      "task": "Retrieve the current stock price of a company"}


def test_our_own_export_keeps_task_as_the_trajectory_task() -> None:
    # Prepare: an exported record carries task_type, so its task is the trajectory's task.
    record = {"trajectory_id": "t-9", "task": "the task text", "task_type": "math",
              "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
              "tools": "[]", "final_response": "a"}

    # Execute
    trajectory = from_hermes(record)

    # Assert
    assert (trajectory["task"], trajectory["task_type"]) == ("the task text", "math")
    assert hermes_labels(record) == {}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlEventStore]:
    s = open_store(f"sqlite:///{tmp_path / 'acme.db'}", "acme", keyring=Keyring.generate("acme"))
    yield s
    s.close()


def test_the_fixture_imports_with_its_labels_in_the_event_metadata(
        store: SqlEventStore) -> None:
    # Execute
    report = import_lines(FIXTURE.read_text().splitlines(), "hermes", store.append)

    # Assert
    assert (report.imported, report.bad_lines) == (5, ())
    recorded = [e for e in store.read() if e.type == "TrajectoryRecorded"]
    assert recorded[0].metadata["labels"] == hermes_labels(_rows()[0])
    assert {e.data["task_type"] for e in recorded} == {
        "Stocks and Orders", "Travel", "Weather", "JSON Schema"}


def test_parsed_lines_carry_labels() -> None:
    # Execute
    (parsed,) = parse_jsonl([FIXTURE.read_text().splitlines()[1]], "hermes")

    # Assert
    assert isinstance(parsed, ParsedLine)
    assert parsed.labels["subcategory"] == "Flight Booking"
