"""OpenAI fine-tuning JSONL with tools and per-message ``weight`` (issue 21, item 5).

``tests/fixtures/openai_finetune_tools.jsonl`` holds hand-written rows in the layout of
OpenAI's fine-tuning files: ``content: null`` beside ``tool_calls`` whose ``function``
nests name and JSON-string arguments, ``tools`` and ``parallel_tool_calls``, and
``"weight": 0|1`` on assistant messages. A weight-0 turn is kept as context and carries
no loss in training (tests/unit/training/test_dataset.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hermes_fed.errors import FormatError
from hermes_fed.formats.jsonl import BadLine, parse_jsonl
from hermes_fed.formats.openai import from_openai, to_openai
from hermes_fed.formats.trajectory import trajectory_problem

FIXTURE = Path(__file__).parents[2] / "fixtures" / "openai_finetune_tools.jsonl"


def _rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def test_every_fixture_row_parses() -> None:
    # Execute
    parsed = list(parse_jsonl(FIXTURE.read_text().splitlines(), "openai"))

    # Assert
    assert [p for p in parsed if isinstance(p, BadLine)] == []
    assert len(parsed) == 3


def test_per_message_weights_are_kept_on_assistant_turns() -> None:
    # Execute
    trajectory = from_openai(_rows()[1])

    # Assert: the weight-0 answer stays as context; weights are kept as given
    assert trajectory_problem(trajectory) is None
    weights = [(m["role"], m.get("weight")) for m in trajectory["messages"]]
    assert weights == [("system", None), ("user", None), ("assistant", 0), ("user", None),
                       ("assistant", 1), ("tool", None), ("assistant", 1)]
    assert trajectory["messages"][4]["tool_calls"][0]["arguments"] == {
        "order_id": "5120", "reason": "damaged"}


def test_weights_survive_export() -> None:
    # Prepare
    trajectory = from_openai(_rows()[1])

    # Execute
    back = from_openai(json.loads(json.dumps(to_openai(trajectory))))

    # Assert
    assert back == trajectory
    assert to_openai(trajectory)["messages"][2]["weight"] == 0


@pytest.mark.parametrize(("message", "field"), [
    ({"role": "assistant", "content": "a", "weight": 2}, "messages[1].weight"),
    ({"role": "assistant", "content": "a", "weight": 0.5}, "messages[1].weight"),
    ({"role": "assistant", "content": "a", "weight": "0"}, "messages[1].weight"),
    ({"role": "assistant", "content": "a", "weight": True}, "messages[1].weight"),
    ({"role": "user", "content": "a", "weight": 0}, "messages[1].weight"),
])
def test_a_bad_weight_names_the_field(message: dict[str, Any], field: str) -> None:
    # Prepare
    record = {"messages": [{"role": "user", "content": "q"}, message]}

    # Execute
    with pytest.raises(FormatError) as caught:
        from_openai(record)

    # Assert
    assert str(caught.value).startswith(field + ":"), caught.value


def test_trajectory_check_refuses_a_weight_outside_the_shape() -> None:
    # Prepare
    trajectory = from_openai(_rows()[0])
    trajectory["messages"][1]["weight"] = 0  # a user turn

    # Execute
    problem = trajectory_problem(trajectory)

    # Assert
    assert problem is not None and problem.startswith("messages[1].weight:")


def test_weights_survive_a_hermes_export_too() -> None:
    # Prepare
    from hermes_fed.formats.hermes import from_hermes, to_hermes

    trajectory = from_openai(_rows()[1])

    # Execute
    back = from_hermes(json.loads(json.dumps(to_hermes(trajectory))))

    # Assert
    assert [m.get("weight") for m in back["messages"]] == [
        m.get("weight") for m in trajectory["messages"]]
