"""OpenAI chat messages <-> the trajectory shape (CONTRIBUTING.md, "Trajectory").

OpenAI's wire: an assistant turn's ``content`` may be ``null`` beside ``tool_calls`` of
``{"id", "type": "function", "function": {"name", "arguments": "<JSON string>"}}``; tool
turns answer a call by ``tool_call_id``; content may be a list of ``{"type": "text"}``
parts; ``developer`` is the newer name of ``system``. Ours: ``content`` is always a string,
a call is ``{"id", "name", "arguments": <object>}``, a tool turn carries the tool's
``name``. Clients add fields of their own when they send an answer back (the ``openai``
client's ``refusal``, ``annotations``, ``audio``: null); the conversion keeps only what the
trajectory holds, so the same turn converts to the same message whoever sent it (the
gateway's session assembly compares converted turns).

A call whose ``arguments`` are not a JSON object (a model's malformed call) is kept as what
the model said: its template text ``<tool_call>{...}</tool_call>`` in ``content``, which the
quality judges count as broken tool use, instead of an invented object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from hermes_fed.errors import FormatError

ROLES = ("system", "user", "assistant", "tool")
ROLE_ALIASES = {"developer": "system"}


def content_text(content: Any, path: str) -> str:
    """A message's content as one string: a string, ``null`` (""), or text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type", "text") != "text" \
                    or not isinstance(part.get("text"), str):
                raise FormatError(f"{path}[{index}]: only text parts are supported")
            texts.append(part["text"])
        return "".join(texts)
    raise FormatError(f"{path}: expected a string, null or a list of text parts, "
                      f"got {type(content).__name__}")


def _arguments(raw: Any) -> dict[str, Any] | None:
    """A call's arguments as an object, or None when they are not a JSON object."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None
    return None


def _call_as_text(name: str, raw: Any) -> str:
    arguments = raw if isinstance(raw, str) else orjson.dumps(raw).decode()
    return '<tool_call>{"name": ' + orjson.dumps(name).decode() + ', "arguments": ' \
        + arguments + "}</tool_call>"


def from_openai_message(raw: Any, path: str, call_names: dict[str, str]) -> dict[str, Any]:
    """One OpenAI chat message as a trajectory message; raises ``FormatError`` naming the
    field. ``call_names`` maps the ids of earlier tool calls to their tool (updated here)."""
    if not isinstance(raw, Mapping):
        raise FormatError(f"{path}: expected an object, got {type(raw).__name__}")
    role = raw.get("role")
    role = ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
    if role not in ROLES:
        raise FormatError(f"{path}.role: expected one of system|developer|user|assistant|tool, "
                          f"got {str(role)[:40]!r}")
    message: dict[str, Any] = {"role": role,
                               "content": content_text(raw.get("content"), f"{path}.content")}
    if role == "assistant":
        calls = raw.get("tool_calls") or []
        if not isinstance(calls, list):
            raise FormatError(f"{path}.tool_calls: expected a list")
        parsed: list[dict[str, Any]] = []
        as_text: list[str] = []
        for index, call in enumerate(calls):
            where = f"{path}.tool_calls[{index}]"
            if not isinstance(call, Mapping):
                raise FormatError(f"{where}: expected an object")
            function = call.get("function", call)  # nested (OpenAI) or flat (ours)
            if not isinstance(function, Mapping):
                raise FormatError(f"{where}.function: expected an object")
            name, call_id = function.get("name"), call.get("id")
            if not isinstance(name, str) or not name:
                raise FormatError(f"{where}.function.name: expected a non-empty string")
            if not isinstance(call_id, str) or not call_id:
                raise FormatError(f"{where}.id: expected a non-empty string")
            arguments = _arguments(function.get("arguments"))
            if arguments is None:
                as_text.append(_call_as_text(name, function.get("arguments")))
                continue
            parsed.append({"id": call_id, "name": name, "arguments": arguments})
            call_names[call_id] = name
        if as_text:
            message["content"] += "".join(as_text)
        if parsed:
            message["tool_calls"] = parsed
        reasoning = raw.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            message["reasoning"] = reasoning
    elif role == "tool":
        call_id = raw.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise FormatError(f"{path}.tool_call_id: expected a non-empty string")
        message["tool_call_id"] = call_id
        name = raw.get("name")
        message["name"] = name if isinstance(name, str) and name else call_names.get(call_id, "")
    return message


def from_openai_messages(raw: Sequence[Any], path: str = "messages") -> list[dict[str, Any]]:
    """A list of OpenAI chat messages as trajectory messages."""
    names: dict[str, str] = {}
    return [from_openai_message(m, f"{path}[{i}]", names) for i, m in enumerate(raw)]


def is_openai_shaped(messages: Sequence[Any]) -> bool:
    """True when some message uses a shape only OpenAI's wire has (``content: null``, a
    nested ``function`` call, text parts, the ``developer`` role)."""
    for m in messages:
        if not isinstance(m, Mapping):
            continue
        if m.get("content") is None or isinstance(m.get("content"), list) \
                or m.get("role") == "developer":
            return True
        for call in m.get("tool_calls") or ():
            if isinstance(call, Mapping) and "function" in call:
                return True
    return False


def tools_from_openai(raw: Any, path: str = "tools") -> list[dict[str, Any]]:
    """``[{"type": "function", "function": {...}}]`` as ``[{"name", "description",
    "parameters"}]``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise FormatError(f"{path}: expected a list")
    tools = []
    for index, tool in enumerate(raw):
        function = tool.get("function", tool) if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str) \
                or not function["name"]:
            raise FormatError(f"{path}[{index}].function.name: expected a non-empty string")
        parameters = function.get("parameters", {})
        if not isinstance(parameters, Mapping):
            raise FormatError(f"{path}[{index}].function.parameters: expected a JSON object")
        description = function.get("description", "")
        tools.append({"name": function["name"],
                      "description": description if isinstance(description, str) else "",
                      "parameters": dict(parameters)})
    return tools


def to_openai_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A trajectory message as an OpenAI chat message (arguments as JSON strings)."""
    out: dict[str, Any] = {"role": message["role"], "content": message.get("content", "")}
    calls = message.get("tool_calls")
    if calls:
        out["content"] = message.get("content") or None
        out["tool_calls"] = [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"],
                          "arguments": orjson.dumps(c.get("arguments", {})).decode()}}
            for c in calls]
    if message["role"] == "tool":
        out["tool_call_id"] = message.get("tool_call_id", "")
        if message.get("name"):
            out["name"] = message["name"]
    return out


def tools_to_openai(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": dict(t)} for t in tools]


def first_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    return next((str(m.get("content", "")) for m in messages if m.get("role") == "user"), "")
