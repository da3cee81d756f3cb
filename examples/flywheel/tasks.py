"""Verifiable tool-using task families of the simulator: generator, tool, verifier, golden.

Four families, each a small plugin that carries its data (CONVENTIONS.md): a seeded
generator of task instances, the tool's JSON schema, a real executor of that tool, a
verifier that decides from the *task text alone* whether a response solves it (so it still
works on a redacted trajectory and never trusts the agent's own tool call), and a golden
reply template (the cold start).

- ``arithmetic``: ``calculator(expression)`` over + - * / of two integers;
- ``unit_conversion``: ``convert_units(value, from, to)`` over linear unit pairs;
- ``table_lookup``: ``lookup(table, key)`` in a tenant's own table (non-IID by tenant);
- ``date_arithmetic``: ``date_add(date, days)`` on ISO dates.

Importing this module registers a verifier per task type in
``hermes_fed.training.verifiers.VERIFIERS`` (``arithmetic`` keeps the built-in one, which
reads the same expression), so ``hermes_fed.training.evaluation.evaluate`` measures task
success on simulator trajectories.

Invariants
----------
S1. Every golden trajectory passes its own family's verifier, and its tool call, run by the
    family's executor, returns the value the golden final answer states.
S2. A task instance is a pure function of (family, tenant table, seed): same seed, same task.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import random
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from hermes_fed.training.verifiers import VERIFIERS, Verifier, safe_arithmetic

SYSTEM_PROMPT = "You are a helpful agent with tools."
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class TaskInstance:
    """One task: the request a user types (without PII) and its ground truth.

    ``arguments`` are the golden tool-call arguments; ``answer`` the verified result
    (a number, or an ISO date string).
    """

    task_type: str
    request: str
    tool: str
    arguments: Mapping[str, Any]
    answer: float | str


def _last_number(text: str) -> float | None:
    numbers = _NUMBER.findall(text)
    return float(numbers[-1]) if numbers else None


def _close(value: float | None, expected: float, rel: float = 1e-6) -> bool:
    return value is not None and math.isclose(value, expected, rel_tol=rel, abs_tol=1e-6)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


class TaskFamily(ABC):
    """A family of verifiable tool-using tasks."""

    task_type: str
    tool_name: str
    description: str
    parameters: ClassVar[Mapping[str, Any]]

    @property
    def tool_schema(self) -> dict[str, Any]:
        """The tool as the trajectory's ``tools`` entry."""
        return {"name": self.tool_name, "description": self.description,
                "parameters": dict(self.parameters)}

    @abstractmethod
    def generate(self, rng: random.Random, table: str) -> TaskInstance:
        """A new task; ``table`` is the tenant's table name (only lookups use it)."""

    @abstractmethod
    def execute(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Run the tool: ``{"result": ...}`` or ``{"error": "..."}`` for bad arguments."""

    @abstractmethod
    def expected(self, task_text: str) -> float | str | None:
        """The answer implied by the task text, or ``None`` when it cannot be read."""

    @abstractmethod
    def final_answer(self, instance: TaskInstance, result: Any) -> str:
        """The golden final reply stating ``result``."""

    def verify(self, task_text: str, response: str) -> bool:
        """True when ``response`` states the answer of ``task_text``."""
        expected = self.expected(task_text)
        if expected is None:
            return False
        if isinstance(expected, str):
            dates = _DATE.findall(response)
            return bool(dates) and dates[-1] == expected
        return _close(_last_number(response), expected, 1e-2 if not
                      float(expected).is_integer() else 1e-9)

    def run(self, arguments: Any) -> str:
        """Execute and serialise as the tool message's content (never raises)."""
        if not isinstance(arguments, Mapping):
            return json.dumps({"error": "arguments must be a JSON object"})
        try:
            return json.dumps(self.execute(arguments))
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            return json.dumps({"error": f"{type(exc).__name__}: {exc}"[:120]})


class Arithmetic(TaskFamily):
    task_type = "arithmetic"
    tool_name = "calculator"
    description = "Evaluate an arithmetic expression"
    parameters: ClassVar[Mapping[str, Any]] = {
        "type": "object", "properties": {"expression": {"type": "string"}},
        "required": ["expression"]}
    _PATTERN = re.compile(r"What is (-?\d+) ([-+*/]) (-?\d+)\?")

    def generate(self, rng: random.Random, table: str) -> TaskInstance:
        op = rng.choice("+-*/")
        if op == "/":
            b = rng.randint(2, 30)
            a = b * rng.randint(2, 40)
        elif op == "*":
            a, b = rng.randint(2, 99), rng.randint(2, 40)
        else:
            a, b = rng.randint(1, 999), rng.randint(1, 999)
        expression = f"{a} {op} {b}"
        return TaskInstance(self.task_type, f"What is {expression}?", self.tool_name,
                            {"expression": expression}, safe_arithmetic(expression))

    def execute(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        value = safe_arithmetic(str(arguments["expression"]))
        return {"result": int(value) if value.is_integer() else round(value, 4)}

    def expected(self, task_text: str) -> float | None:
        match = self._PATTERN.search(task_text)
        return safe_arithmetic(" ".join(match.groups())) if match else None

    def final_answer(self, instance: TaskInstance, result: Any) -> str:
        return f"The answer is {result}."


UNIT_FACTORS: dict[tuple[str, str], float] = {
    ("km", "mi"): 0.621371, ("mi", "km"): 1.609344, ("kg", "lb"): 2.204623,
    ("lb", "kg"): 0.453592, ("m", "ft"): 3.280840, ("ft", "m"): 0.3048,
    ("l", "gal"): 0.264172, ("gal", "l"): 3.785412, ("cm", "in"): 0.393701,
    ("in", "cm"): 2.54,
}


class UnitConversion(TaskFamily):
    task_type = "unit_conversion"
    tool_name = "convert_units"
    description = "Convert a quantity between units"
    parameters: ClassVar[Mapping[str, Any]] = {"type": "object", "properties": {"value": {"type": "number"},
                                                   "from": {"type": "string"},
                                                   "to": {"type": "string"}},
                  "required": ["value", "from", "to"]}
    _PATTERN = re.compile(r"Convert (\d+) ([a-z]+) to ([a-z]+)\.")

    def generate(self, rng: random.Random, table: str) -> TaskInstance:
        src, dst = rng.choice(sorted(UNIT_FACTORS))
        value = rng.randint(1, 500)
        answer = round(value * UNIT_FACTORS[(src, dst)], 2)
        return TaskInstance(self.task_type, f"Convert {value} {src} to {dst}.", self.tool_name,
                            {"value": value, "from": src, "to": dst}, answer)

    def execute(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        pair = (str(arguments["from"]), str(arguments["to"]))
        if pair not in UNIT_FACTORS:
            raise ValueError(f"unknown conversion {pair[0]} -> {pair[1]}")
        value = float(arguments["value"])
        return {"result": round(value * UNIT_FACTORS[pair], 2)}

    def expected(self, task_text: str) -> float | None:
        match = self._PATTERN.search(task_text)
        if not match or (match.group(2), match.group(3)) not in UNIT_FACTORS:
            return None
        return round(float(match.group(1)) * UNIT_FACTORS[(match.group(2), match.group(3))], 2)

    def final_answer(self, instance: TaskInstance, result: Any) -> str:
        a = instance.arguments
        return f"{a['value']} {a['from']} is {result} {a['to']}."


TABLE_ITEMS = ("apple", "bolt", "cable", "drill", "engine", "filter", "gear", "hammer",
               "inlet", "jack", "kettle", "lamp", "motor", "nozzle", "pump", "valve")


def table_value(table: str, key: str) -> int:
    """The value of ``key`` in ``table``: a keyed hash, so a tenant's table needs no storage
    and a verifier can recompute it from the task text alone."""
    digest = hashlib.sha256(f"{table}/{key}".encode()).digest()
    return 10 + int.from_bytes(digest[:4], "big") % 990


class TableLookup(TaskFamily):
    task_type = "table_lookup"
    tool_name = "lookup"
    description = "Look up a key in a table"
    parameters: ClassVar[Mapping[str, Any]] = {"type": "object", "properties": {"table": {"type": "string"},
                                                   "key": {"type": "string"}},
                  "required": ["table", "key"]}
    _PATTERN = re.compile(r"Look up ([a-z]+) in the ([a-z0-9_]+) table\.")

    def generate(self, rng: random.Random, table: str) -> TaskInstance:
        key = rng.choice(TABLE_ITEMS)
        return TaskInstance(self.task_type, f"Look up {key} in the {table} table.",
                            self.tool_name, {"table": table, "key": key},
                            float(table_value(table, key)))

    def execute(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        key = str(arguments["key"])
        if key not in TABLE_ITEMS:
            raise KeyError(f"no row {key!r}")
        return {"result": table_value(str(arguments["table"]), key)}

    def expected(self, task_text: str) -> float | None:
        match = self._PATTERN.search(task_text)
        return float(table_value(match.group(2), match.group(1))) if match else None

    def final_answer(self, instance: TaskInstance, result: Any) -> str:
        return f"The {instance.arguments['key']} value is {result}."


class DateArithmetic(TaskFamily):
    task_type = "date_arithmetic"
    tool_name = "date_add"
    description = "Add a number of days to an ISO date"
    parameters: ClassVar[Mapping[str, Any]] = {"type": "object", "properties": {"date": {"type": "string"},
                                                   "days": {"type": "integer"}},
                  "required": ["date", "days"]}
    _PATTERN = re.compile(r"What date is (\d+) days after (\d{4}-\d{2}-\d{2})\?")

    def generate(self, rng: random.Random, table: str) -> TaskInstance:
        start = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 900))
        days = rng.randint(1, 120)
        end = start + dt.timedelta(days=days)
        return TaskInstance(self.task_type, f"What date is {days} days after {start}?",
                            self.tool_name, {"date": start.isoformat(), "days": days},
                            end.isoformat())

    def execute(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        start = dt.date.fromisoformat(str(arguments["date"]))
        days = int(arguments["days"])
        return {"result": (start + dt.timedelta(days=days)).isoformat()}

    def expected(self, task_text: str) -> str | None:
        match = self._PATTERN.search(task_text)
        if not match:
            return None
        try:
            start = dt.date.fromisoformat(match.group(2))
        except ValueError:
            return None
        return (start + dt.timedelta(days=int(match.group(1)))).isoformat()

    def final_answer(self, instance: TaskInstance, result: Any) -> str:
        return f"The date is {result}."


FAMILIES: dict[str, TaskFamily] = {f.task_type: f for f in (
    Arithmetic(), UnitConversion(), TableLookup(), DateArithmetic())}
"""The task families by task type."""


def family(task_type: str) -> TaskFamily:
    """The family of ``task_type``; ``ValueError`` naming it when unknown."""
    if task_type not in FAMILIES:
        raise ValueError(f"unknown task_type {task_type!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[task_type]


def trajectory_id_for(namespace: str, index: int) -> str:
    """A stable trajectory id (``t-`` + 16 hex of a hash of the namespace and index)."""
    return "t-" + hashlib.sha256(f"{namespace}/{index}".encode()).hexdigest()[:16]


def golden_trajectory(instance: TaskInstance, trajectory_id: str,
                      user_text: str | None = None) -> dict[str, Any]:
    """The correct trajectory of a task (CONTRIBUTING.md shape): call, result, answer.

    ``user_text`` is the user's turn (defaults to the bare request; the simulator adds PII).
    """
    fam = family(instance.task_type)
    text = user_text if user_text is not None else instance.request
    result = json.loads(fam.run(instance.arguments))["result"]
    final = fam.final_answer(instance, result)
    return {
        "trajectory_id": trajectory_id,
        "task": text,
        "task_type": instance.task_type,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": text},
            {"role": "assistant", "content": "",
             "tool_calls": [{"id": "call_1", "name": instance.tool,
                             "arguments": dict(instance.arguments)}]},
            {"role": "tool", "tool_call_id": "call_1", "name": instance.tool,
             "content": json.dumps({"result": result})},
            {"role": "assistant", "content": final},
        ],
        "tools": [fam.tool_schema],
        "final_response": final,
    }


class FamilyVerifier(Verifier):
    """Adapter of a family to the training verifier registry (reads the task text)."""

    def __init__(self, fam: TaskFamily) -> None:
        self.task_type = fam.task_type
        self._family = fam

    def verify(self, trajectory: Mapping[str, Any], response: str) -> bool:
        return self._family.verify(str(trajectory.get("task", "")), response)


def register_verifiers() -> None:
    """Register a verifier per family not already known to ``VERIFIERS`` (idempotent)."""
    for task_type, fam in FAMILIES.items():
        if task_type not in VERIFIERS:
            VERIFIERS.register(FamilyVerifier(fam))


register_verifiers()
