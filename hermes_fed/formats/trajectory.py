"""The trajectory shape (CONTRIBUTING.md, "Trajectory") that every format converts to and from.

A trajectory is the data of a ``TrajectoryRecorded`` event::

    {"trajectory_id", "task", "task_type", "messages": [...], "tools": [...], "final_response"}

The event catalog checks the top-level fields; :func:`trajectory_problem` checks the turns
inside ``messages`` and ``tools``, which the catalog stores as opaque JSON lists.
Optional message keys beyond the shared shape: ``reasoning`` (an assistant's ``<think>``
text, kept apart from ``content`` so it can be trained on or dropped deliberately), and
``weight`` (assistant turns only, 0 or 1, as in OpenAI fine-tuning files: a weight-0 turn
is context, not a training target).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from hermes_fed.events.codec import canonical_json, shown_key

ROLES = ("system", "user", "assistant", "tool")
TOP_LEVEL = ("trajectory_id", "task", "task_type", "messages", "tools", "final_response")
_MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id", "name", "reasoning",
                           "weight"})
_TOOL_KEYS = frozenset({"name", "description", "parameters"})


def _call_problem(call: Any, path: str) -> str | None:
    if not isinstance(call, Mapping):
        return f"{path}: expected an object, got {type(call).__name__}"
    for key in ("id", "name"):
        if not isinstance(call.get(key), str) or not call[key]:
            return f"{path}.{key}: expected a non-empty string"
    if not isinstance(call.get("arguments"), Mapping):
        kind = type(call.get("arguments")).__name__
        return f"{path}.arguments: expected a JSON object, got {kind}"
    extra = [(i, k) for i, k in enumerate(call) if k not in ("id", "name", "arguments")]
    if extra:
        return f"{path}.{shown_key(extra[0][1], extra[0][0])}: unknown key"
    return None


def weight_problem(weight: Any, role: Any) -> str | None:
    """Why a turn's ``weight`` is refused (only assistant turns, only 0 or 1), or None."""
    if role != "assistant":
        return "only assistant turns carry a weight"
    if type(weight) is not int or weight not in (0, 1):
        return f"expected 0 or 1, got a {type(weight).__name__}" + (
            f" {weight}" if type(weight) in (int, float) else "")
    return None


def message_problem(message: Any, path: str, open_calls: set[str]) -> str | None:
    """Describe the first problem of one turn (path + what is wrong), or return None.

    ``open_calls`` holds the ids of tool calls made so far; a tool turn must answer one.
    """
    if not isinstance(message, Mapping):
        return f"{path}: expected an object, got {type(message).__name__}"
    extra = [(i, k) for i, k in enumerate(message) if k not in _MESSAGE_KEYS]
    if extra:
        return f"{path}.{shown_key(extra[0][1], extra[0][0])}: unknown key"
    role = message.get("role")
    if role not in ROLES:
        return f"{path}.role: expected one of {'|'.join(ROLES)}"
    if not isinstance(message.get("content"), str):
        return f"{path}.content: expected a string, got {type(message.get('content')).__name__}"
    if "reasoning" in message and not isinstance(message["reasoning"], str):
        return f"{path}.reasoning: expected a string"
    if "weight" in message:
        problem = weight_problem(message["weight"], role)
        if problem:
            return f"{path}.weight: {problem}"
    calls = message.get("tool_calls", [])
    if calls and role != "assistant":
        return f"{path}.tool_calls: only assistant turns call tools"
    if not isinstance(calls, list):
        return f"{path}.tool_calls: expected a list"
    for index, call in enumerate(calls):
        problem = _call_problem(call, f"{path}.tool_calls[{index}]")
        if problem:
            return problem
        open_calls.add(call["id"])
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or call_id not in open_calls:
            return f"{path}.tool_call_id: does not answer an earlier tool call"
        if not isinstance(message.get("name", ""), str):
            return f"{path}.name: expected a string"
    elif "tool_call_id" in message:
        return f"{path}.tool_call_id: only tool turns carry a tool_call_id"
    return None


def trajectory_problem(data: Mapping[str, Any]) -> str | None:
    """Describe the first problem of a trajectory (field path + what is wrong), or None.

    Messages name the field and the kind of problem, never the text (it may be personal).
    """
    for key in TOP_LEVEL:
        if key not in data:
            return f"{key}: required field missing"
    for key in ("trajectory_id", "task", "task_type", "final_response"):
        if not isinstance(data[key], str):
            return f"{key}: expected a string, got {type(data[key]).__name__}"
    if not data["trajectory_id"]:
        return "trajectory_id: must not be empty"
    messages, tools = data["messages"], data["tools"]
    if not isinstance(messages, list) or not messages:
        return "messages: expected a non-empty list"
    open_calls: set[str] = set()
    for index, message in enumerate(messages):
        problem = message_problem(message, f"messages[{index}]", open_calls)
        if problem:
            return problem
    if not isinstance(tools, list):
        return "tools: expected a list"
    for index, tool in enumerate(tools):
        path = f"tools[{index}]"
        if not isinstance(tool, Mapping):
            return f"{path}: expected an object"
        extra = [(i, k) for i, k in enumerate(tool) if k not in _TOOL_KEYS]
        if extra:
            return f"{path}.{shown_key(extra[0][1], extra[0][0])}: unknown key"
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            return f"{path}.name: expected a non-empty string"
        if not isinstance(tool.get("parameters", {}), Mapping):
            return f"{path}.parameters: expected a JSON object"
    return None


def unanswered_problem(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """The last user turn, when no assistant turn follows it: an import refuses such a
    record (there is nothing to learn from a request nobody answered), or None."""
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if users and not any(m.get("role") == "assistant" for m in messages[users[-1] + 1:]):
        return f"messages[{users[-1]}]: a user turn with no answer after it"
    return None


def content_trajectory_id(record: Any) -> str:
    """A stable id for an imported record without one: ``t-`` + 20 hex of its SHA-256.

    Re-importing the same file then yields the same ids, so it appends nothing new.
    """
    return "t-" + hashlib.sha256(canonical_json(record)).hexdigest()[:20]


def first_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    return next((str(m["content"]) for m in messages if m.get("role") == "user"), "")


def last_assistant_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "assistant" and message.get("content"):
            return str(message["content"])
    return ""
