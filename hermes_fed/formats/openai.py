"""OpenAI chat-completions JSONL <-> trajectory.

A record is ``{"messages": [...], "tools": [...]}`` as sent to ``/v1/chat/completions``:
assistant ``tool_calls`` are ``{"id", "type": "function", "function": {"name", "arguments"}}``
with ``arguments`` a JSON *string*; tool turns carry ``tool_call_id``; tools are
``{"type": "function", "function": {"name", "description", "parameters"}}``. Reasoning, when
present, is read from ``reasoning_content`` (the field DeepSeek-style APIs use).

OpenAI fine-tuning files add ``"weight": 0|1`` to assistant messages; it is kept on the
turn (:mod:`.trajectory`), and a weight-0 turn stays in the conversation as context but
carries no loss in training (``hermes_fed.training.dataset.tokenize_trajectory``).
Top-level ``parallel_tool_calls`` is read and dropped (it is a request option).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hermes_fed.errors import FormatError

from .trajectory import (
    ROLES,
    content_trajectory_id,
    first_user_text,
    last_assistant_text,
    weight_problem,
)


def _text(content: Any, path: str) -> str:
    """Content is a string, null, or a list of ``{"type": "text", "text"}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, Mapping) or not isinstance(part.get("text"), str):
                raise FormatError(f"{path}[{index}]: only text parts are supported")
            texts.append(part["text"])
        return "".join(texts)
    raise FormatError(f"{path}: expected a string, got {type(content).__name__}")


def _tool_call(raw: Any, path: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("function"), Mapping):
        raise FormatError(f"{path}.function: expected an object")
    function = raw["function"]
    if not isinstance(raw.get("id"), str) or not raw["id"]:
        raise FormatError(f"{path}.id: expected a non-empty string")
    if not isinstance(function.get("name"), str) or not function["name"]:
        raise FormatError(f"{path}.function.name: expected a non-empty string")
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise FormatError(f"{path}.function.arguments: not valid JSON") from None
    if not isinstance(arguments, Mapping):
        raise FormatError(f"{path}.function.arguments: expected a JSON object")
    return {"id": raw["id"], "name": function["name"], "arguments": dict(arguments)}


def _message(raw: Any, path: str, names: dict[str, str]) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise FormatError(f"{path}: expected an object")
    role = raw.get("role")
    if role == "developer":
        role = "system"
    if role not in ROLES:
        raise FormatError(f"{path}.role: expected one of {'|'.join(ROLES)}")
    content = _text(raw.get("content"), f"{path}.content")
    message: dict[str, Any] = {"role": role, "content": content}
    if "weight" in raw:
        problem = weight_problem(raw["weight"], role)
        if problem:
            raise FormatError(f"{path}.weight: {problem}")
        message["weight"] = raw["weight"]
    if role == "assistant":
        calls = raw.get("tool_calls") or []
        if not isinstance(calls, list):
            raise FormatError(f"{path}.tool_calls: expected a list")
        parsed = [_tool_call(c, f"{path}.tool_calls[{i}]") for i, c in enumerate(calls)]
        if parsed:
            message["tool_calls"] = parsed
            names.update((c["id"], c["name"]) for c in parsed)
        reasoning = raw.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            message["reasoning"] = reasoning
    elif role == "tool":
        call_id = raw.get("tool_call_id")
        if not isinstance(call_id, str) or call_id not in names:
            raise FormatError(f"{path}.tool_call_id: does not answer an earlier tool call")
        message["tool_call_id"] = call_id
        message["name"] = str(raw.get("name") or names[call_id])
    return message


def from_openai(record: Any) -> dict[str, Any]:
    """Convert one chat-completions record to a trajectory.

    Raises ``FormatError`` naming the field.
    """
    if not isinstance(record, Mapping):
        raise FormatError(f"<record>: expected a JSON object, got {type(record).__name__}")
    raw_messages = record.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise FormatError("messages: expected a non-empty list")
    names: dict[str, str] = {}
    messages = [_message(m, f"messages[{i}]", names) for i, m in enumerate(raw_messages)]
    raw_tools = record.get("tools") or []
    if not isinstance(raw_tools, list):
        raise FormatError("tools: expected a list")
    tools = []
    for index, tool in enumerate(raw_tools):
        function = tool.get("function", tool) if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise FormatError(f"tools[{index}].function.name: expected a string")
        parameters = function.get("parameters", {})
        if not isinstance(parameters, Mapping):
            raise FormatError(f"tools[{index}].function.parameters: expected a JSON object")
        tools.append({"name": function["name"],
                      "description": str(function.get("description", "")),
                      "parameters": dict(parameters)})
    trajectory_id = record.get("trajectory_id")
    if not isinstance(trajectory_id, str) or not trajectory_id:
        trajectory_id = f"t-{record['id']}" if record.get("id") else content_trajectory_id(record)
    return {
        "trajectory_id": trajectory_id,
        "task": str(record.get("task") or first_user_text(messages)),
        "task_type": str(record.get("task_type") or "unknown"),
        "messages": messages,
        "tools": tools,
        "final_response": str(record.get("final_response") or last_assistant_text(messages)),
    }


def to_openai(trajectory: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a trajectory to a chat-completions record (arguments as JSON strings)."""
    messages: list[dict[str, Any]] = []
    for message in trajectory["messages"]:
        out: dict[str, Any] = {"role": message["role"], "content": message["content"]}
        if message.get("tool_calls"):
            out["content"] = message["content"] or None
            out["tool_calls"] = [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"],
                              "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
                for c in message["tool_calls"]
            ]
        if message.get("reasoning"):
            out["reasoning_content"] = message["reasoning"]
        if "weight" in message:
            out["weight"] = message["weight"]
        if message["role"] == "tool":
            out["tool_call_id"] = message["tool_call_id"]
            if message.get("name"):
                out["name"] = message["name"]
        messages.append(out)
    return {
        "trajectory_id": trajectory["trajectory_id"],
        "task": trajectory["task"],
        "task_type": trajectory["task_type"],
        "messages": messages,
        "tools": [{"type": "function", "function": dict(t)} for t in trajectory["tools"]],
        "final_response": trajectory["final_response"],
    }
