"""Shared trajectories for the format tests."""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import strategies as st

SAMPLE: dict[str, Any] = {
    "trajectory_id": "t-1",
    "task": "what is 2+3?",
    "task_type": "arithmetic",
    "messages": [
        {"role": "system", "content": "You are a helpful agent."},
        {"role": "user", "content": "what is 2+3?"},
        {"role": "assistant", "content": "", "reasoning": "use the calculator",
         "tool_calls": [{"id": "call_1", "name": "calculator",
                         "arguments": {"expression": "2+3"}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "calculator",
         "content": json.dumps({"result": 5})},
        {"role": "assistant", "content": "2+3 = 5"},
    ],
    "tools": [{"name": "calculator", "description": "evaluates arithmetic",
               "parameters": {"type": "object"}}],
    "final_response": "2+3 = 5",
}

# Text that survives every format: no tags, no surrounding whitespace, not JSON itself.
_words = st.text(alphabet=string.ascii_letters + "é漢 ,.?", min_size=1, max_size=30).map(
    lambda s: "w" + s.strip()
)
_json_scalars = st.one_of(st.integers(-1000, 1000), st.booleans(), _words, st.none())
_arguments = st.dictionaries(st.sampled_from(["a", "b", "expr", "city"]), _json_scalars,
                             max_size=3)


@st.composite
def trajectories(draw: st.DrawFn) -> dict[str, Any]:
    """Random valid trajectories with tool calls numbered call_1, call_2... in order."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(_words)})
    task = draw(_words)
    messages.append({"role": "user", "content": task})
    calls = 0
    for _ in range(draw(st.integers(0, 3))):
        n = draw(st.integers(1, 2))
        tool_calls = []
        for _ in range(n):
            calls += 1
            tool_calls.append({"id": f"call_{calls}", "name": draw(st.sampled_from(["calc", "web"])),
                               "arguments": draw(_arguments)})
        turn: dict[str, Any] = {"role": "assistant", "content": draw(st.sampled_from(["", "ok"])),
                                "tool_calls": tool_calls}
        if draw(st.booleans()):
            turn["reasoning"] = draw(_words)
        messages.append(turn)
        for call in tool_calls:
            result = draw(st.one_of(_words, st.builds(lambda v: json.dumps({"v": v}), _json_scalars)))
            messages.append({"role": "tool", "tool_call_id": call["id"], "name": call["name"],
                             "content": result})
    final = draw(_words)
    messages.append({"role": "assistant", "content": final})
    return {
        "trajectory_id": "t-" + draw(st.text(string.ascii_lowercase + string.digits, min_size=1,
                                             max_size=8)),
        "task": task,
        "task_type": draw(st.sampled_from(["arithmetic", "search", "unknown"])),
        "messages": messages,
        "tools": [{"name": "calc", "description": draw(_words), "parameters": {"type": "object"}}],
        "final_response": final,
    }
