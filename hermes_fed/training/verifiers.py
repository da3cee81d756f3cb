"""Task-success verifiers, keyed by task type (plugins carry data, like presidio's recognizers).

A verifier decides whether a generated final response solves the trajectory's task. Only
task types with a registered verifier get a success rate; the simulator registers its own.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any

# CPython 3.11's AST validator keeps its recursion depth in interpreter-wide state:
# ast.parse from two threads at once can fail with "SystemError: AST constructor recursion
# depth mismatch" (seen with the demo's users, one thread per tenant). Parsing is tiny here.
_PARSE_LOCK = threading.Lock()
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_EXPRESSION = re.compile(r"-?\d+(?:\.\d+)?(?:\s*[-+*/]\s*\(?-?\d+(?:\.\d+)?\)?)+")
_OPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


class Verifier(ABC):
    """Checks a generated response against a trajectory's task."""

    task_type: str

    @abstractmethod
    def verify(self, trajectory: Mapping[str, Any], response: str) -> bool:
        """True when ``response`` solves ``trajectory``'s task."""


def safe_arithmetic(expression: str) -> float:
    """Evaluate + - * / over numbers (no names, no calls); ``ValueError`` otherwise."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
        ):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError(f"unsupported arithmetic node {type(node).__name__}")

    try:
        with _PARSE_LOCK:
            tree = ast.parse(expression.strip(), mode="eval")
        return walk(tree)
    except (SyntaxError, ZeroDivisionError) as exc:
        raise ValueError(f"cannot evaluate expression: {exc.__class__.__name__}") from exc


class ArithmeticVerifier(Verifier):
    """Success iff the last number in the response equals the task's arithmetic value.

    The expected value comes from the first calculator-style ``expression`` argument of a
    tool call, else from an expression in the task text, else from the last number of the
    trajectory's ``final_response``.
    """

    task_type = "arithmetic"

    def __init__(self, rel_tol: float = 1e-6) -> None:
        self.rel_tol = rel_tol

    def expected(self, trajectory: Mapping[str, Any]) -> float | None:
        for message in trajectory.get("messages") or ():
            for call in message.get("tool_calls") or ():
                expr = (call.get("arguments") or {}).get("expression")
                if isinstance(expr, str):
                    try:
                        return safe_arithmetic(expr)
                    except ValueError:
                        pass
        match = _EXPRESSION.search(str(trajectory.get("task", "")))
        if match:
            try:
                return safe_arithmetic(match.group(0))
            except ValueError:
                pass
        numbers = _NUMBER.findall(str(trajectory.get("final_response", "")))
        return float(numbers[-1]) if numbers else None

    def verify(self, trajectory: Mapping[str, Any], response: str) -> bool:
        expected = self.expected(trajectory)
        numbers = _NUMBER.findall(response)
        if expected is None or not numbers:
            return False
        return math.isclose(float(numbers[-1]), expected, rel_tol=self.rel_tol, abs_tol=1e-9)


class VerifierRegistry:
    """Verifiers by task type; registering a type twice replaces the first."""

    def __init__(self, verifiers: tuple[Verifier, ...] = ()) -> None:
        self._by_type: dict[str, Verifier] = {}
        for verifier in verifiers:
            self.register(verifier)

    def register(self, verifier: Verifier) -> None:
        if not isinstance(getattr(verifier, "task_type", None), str) or not verifier.task_type:
            raise ValueError(f"verifier {type(verifier).__name__} needs a non-empty task_type")
        self._by_type[verifier.task_type] = verifier

    def get(self, task_type: str) -> Verifier | None:
        return self._by_type.get(task_type)

    def __contains__(self, task_type: object) -> bool:
        return task_type in self._by_type

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_type))


VERIFIERS = VerifierRegistry((ArithmeticVerifier(),))
"""The default registry; ``VERIFIERS.register(MyVerifier())`` adds a task type."""
