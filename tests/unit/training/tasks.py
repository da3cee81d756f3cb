"""Tiny agent tasks for training tests (built in code, nothing downloaded)."""

from __future__ import annotations

import random
from typing import Any


def arithmetic_trajectory(i: int, seed: int = 0) -> dict[str, Any]:
    """A calculator trajectory: user asks a sum, assistant calls the tool, then answers."""
    rng = random.Random(seed * 1_000_003 + i)
    a, b = rng.randint(1, 99), rng.randint(1, 99)
    expr = f"{a}+{b}"
    return {
        "trajectory_id": f"t-{seed}-{i}",
        "task": f"What is {expr}?",
        "task_type": "arithmetic",
        "messages": [
            {"role": "system", "content": "You are a helpful agent."},
            {"role": "user", "content": f"What is {expr}?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "call_1", "name": "calculator", "arguments": {"expression": expr}}],
            },
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "name": "calculator",
                "content": f'{{"result": {a + b}}}',
            },
            {"role": "assistant", "content": f"The answer is {a + b}."},
        ],
        "tools": [
            {"name": "calculator", "description": "evaluates arithmetic", "parameters": {"type": "object"}}
        ],
        "final_response": f"The answer is {a + b}.",
    }
