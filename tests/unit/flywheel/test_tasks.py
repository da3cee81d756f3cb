"""Task families: generators, real tool executors, verifiers and golden trajectories."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.flywheel.tasks import (
    FAMILIES,
    UNIT_FACTORS,
    family,
    golden_trajectory,
    table_value,
    trajectory_id_for,
)
from hermes_fed.training.verifiers import VERIFIERS


@pytest.mark.parametrize(("task_type", "task", "response", "expected"), [
    ("arithmetic", "What is 17 * 23?", "The answer is 391.", True),
    ("arithmetic", "What is 17 * 23? Send it to <EMAIL_ADDRESS_1> please.", "391", True),
    ("arithmetic", "What is 17 * 23?", "The answer is 390.", False),
    ("arithmetic", "What is 100 - 250?", "It is -150.", True),
    ("arithmetic", "What is 84 / 4?", "The answer is 21.", True),
    ("arithmetic", "How are you?", "391", False),
    ("unit_conversion", "Convert 5 mi to km.", "5 mi is 8.05 km.", True),
    ("unit_conversion", "Convert 5 mi to km.", "5 mi is 8.04672 km.", True),
    ("unit_conversion", "Convert 5 mi to km.", "5 mi is 9.05 km.", False),
    ("unit_conversion", "Convert 5 mi to parsec.", "8.05", False),
    ("table_lookup", "Look up bolt in the acme_parts table.",
     f"The bolt value is {table_value('acme_parts', 'bolt')}.", True),
    ("table_lookup", "Look up bolt in the globex_stock table.",
     f"The bolt value is {table_value('acme_parts', 'bolt')}.",
     table_value("acme_parts", "bolt") == table_value("globex_stock", "bolt")),
    ("table_lookup", "Look up bolt in the acme_parts table.", "no idea", False),
    ("date_arithmetic", "What date is 30 days after 2024-01-15?", "The date is 2024-02-14.",
     True),
    ("date_arithmetic", "What date is 1 days after 2024-02-28?", "The date is 2024-02-29.",
     True),
    ("date_arithmetic", "What date is 1 days after 2024-02-28?", "The date is 2024-03-01.",
     False),
    ("date_arithmetic", "What date is 1 days after 2024-02-31?", "2024-03-01", False),
])
def test_verifier_table(task_type: str, task: str, response: str, expected: bool) -> None:
    # Prepare
    fam = family(task_type)
    # Execute
    verdict = fam.verify(task, response)
    # Assert
    assert verdict is expected


@pytest.mark.parametrize(("task_type", "arguments", "result"), [
    ("arithmetic", {"expression": "17 * 23"}, {"result": 391}),
    ("arithmetic", {"expression": "7 / 2"}, {"result": 3.5}),
    ("unit_conversion", {"value": 10, "from": "kg", "to": "lb"}, {"result": 22.05}),
    ("unit_conversion", {"value": "3", "from": "in", "to": "cm"}, {"result": 7.62}),
    ("table_lookup", {"table": "t_a", "key": "pump"}, {"result": table_value("t_a", "pump")}),
    ("date_arithmetic", {"date": "2024-12-31", "days": 1}, {"result": "2025-01-01"}),
])
def test_tool_executor_results(task_type: str, arguments: dict, result: dict) -> None:
    # Execute
    out = json.loads(family(task_type).run(arguments))
    # Assert
    assert out == result


@pytest.mark.parametrize(("task_type", "arguments"), [
    ("arithmetic", {"expression": "__import__('os')"}),
    ("arithmetic", {"expression": "1 / 0"}),
    ("arithmetic", {}),
    ("unit_conversion", {"value": 1, "from": "km", "to": "parsec"}),
    ("unit_conversion", {"value": "many", "from": "km", "to": "mi"}),
    ("table_lookup", {"table": "t", "key": "unicorn"}),
    ("date_arithmetic", {"date": "yesterday", "days": 1}),
    ("date_arithmetic", {"date": "2024-01-01", "days": "ten"}),
    ("date_arithmetic", ["not", "an", "object"]),
])
def test_tool_executor_reports_bad_arguments_as_error(task_type: str, arguments: object
                                                      ) -> None:
    # Execute
    out = json.loads(family(task_type).run(arguments))
    # Assert
    assert set(out) == {"error"}


@settings(max_examples=60, deadline=None)
@given(task_type=st.sampled_from(sorted(FAMILIES)), seed=st.integers(0, 2**32))
def test_inv_s1_golden_trajectory_passes_its_verifier(task_type: str, seed: int) -> None:
    # Prepare
    fam = family(task_type)
    instance = fam.generate(random.Random(seed), "acme_parts")
    # Execute
    golden = golden_trajectory(instance, trajectory_id_for("t", seed))
    # Assert
    call = golden["messages"][2]["tool_calls"][0]
    assert call["name"] == fam.tool_name
    assert json.loads(fam.run(call["arguments"])) == json.loads(golden["messages"][3]["content"])
    assert fam.verify(golden["task"], golden["final_response"])
    assert fam.expected(golden["task"]) == (
        instance.answer if isinstance(instance.answer, str) else pytest.approx(instance.answer))
    assert VERIFIERS.get(task_type) is not None
    assert VERIFIERS.get(task_type).verify(golden, golden["final_response"])  # type: ignore[union-attr]


@settings(max_examples=30, deadline=None)
@given(task_type=st.sampled_from(sorted(FAMILIES)), seed=st.integers(0, 2**32))
def test_inv_s2_generation_is_a_function_of_the_seed(task_type: str, seed: int) -> None:
    # Execute
    a = family(task_type).generate(random.Random(seed), "x_table")
    b = family(task_type).generate(random.Random(seed), "x_table")
    # Assert
    assert a == b


def test_unit_factors_are_mutual_inverses() -> None:
    # Assert
    for (src, dst), factor in UNIT_FACTORS.items():
        assert factor * UNIT_FACTORS[(dst, src)] == pytest.approx(1.0, rel=1e-5)


def test_unknown_task_type_is_named() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="'poetry'"):
        family("poetry")
