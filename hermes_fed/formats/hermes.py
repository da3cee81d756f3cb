"""Hermes / ShareGPT JSONL <-> trajectory.

A record holds ``conversations``: turns ``{"from": ..., "value": ...}`` with ``from`` in
system | human | gpt | tool (aliases: user, assistant, function_response, observation,
ipython). Assistant turns carry tool calls as ``<tool_call>{"name", "arguments"}</tool_call>``
blocks and reasoning as ``<think>...</think>``; tool turns carry results as
``<tool_response>{"name", "content"}</tool_response>`` blocks (the format of the Nous
Hermes function-calling data, which also writes these objects as Python literals with single
quotes). Tools come from a top-level ``tools`` field (a list, or a JSON string, or a Python
literal string as some NousResearch rows have), else from the system prompt's
``<tools>...</tools>`` blocks: blank blocks are skipped (the canonical prompt's own phrase
"within <tools></tools> XML tags" is one, before the real block), and a block holds a JSON
or Python-literal list, or objects one after another (one per line in some rows).

Text is parsed as JSON first, then with :func:`ast.literal_eval` (literals only; nothing is
ever evaluated), and what a literal gives is checked to be JSON (tuples become lists; sets,
bytes and other Python values are refused).

Labels: hermes-function-calling-v1 rows carry ``category``, ``subcategory`` and ``task``
(a short description of the kind of request, not the request itself). ``category`` becomes
the trajectory's ``task_type`` (the coarse class selection balances over); the trajectory's
``task`` is the first user turn (what near-duplicate removal, preference pairing and the
agreement judge compare); :func:`hermes_labels` returns the three labels, which the importer
keeps in the ``TrajectoryRecorded`` event's metadata. A record exported by :func:`to_hermes`
carries ``task_type``: its ``task`` is the trajectory's task, so the round trip is exact.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from typing import Any

from hermes_fed.errors import FormatError

from .trajectory import (
    content_trajectory_id,
    first_user_text,
    last_assistant_text,
    weight_problem,
)

_ROLE = {
    "system": "system", "human": "user", "user": "user", "gpt": "assistant",
    "assistant": "assistant", "tool": "tool", "function_response": "tool",
    "observation": "tool", "ipython": "tool",
}
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_TOOL_RESPONSE = re.compile(r"<tool_response>(.*?)</tool_response>", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_TOOLS = re.compile(r"<tools>(.*?)</tools>", re.DOTALL)


def _json_value(value: Any, path: str) -> Any:
    """``value`` (from ``ast.literal_eval``) as JSON values: tuples become lists; anything
    JSON has no form for (sets, bytes, complex numbers, non-string keys) is refused."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v, path) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise FormatError(f"{path}: an object key is not a string")
        return {k: _json_value(v, path) for k, v in value.items()}
    raise FormatError(f"{path}: a {type(value).__name__} is not a JSON value")


def _literal(text: str, path: str) -> Any:
    """Parse a JSON value, or a Python literal (single-quoted dicts) as the Hermes data has."""
    text = text.strip()
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise FormatError(f"{path}: neither JSON nor a Python literal") from None
    try:
        return _json_value(value, path)
    except RecursionError:
        raise FormatError(f"{path}: nested too deeply") from None


_OPEN, _CLOSE = "{[", "}]"


def _top_level_values(text: str) -> list[str]:
    """Split ``text`` into its top-level ``{...}`` / ``[...]`` values (objects one per line
    or one after another), skipping what lies between them; quotes of either kind and
    backslash escapes are honoured, so brackets inside strings do not count."""
    out: list[str] = []
    depth = 0
    start = 0
    quote = ""
    escaped = False
    for index, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char if depth else ""
        elif char in _OPEN:
            if depth == 0:
                start = index
            depth += 1
        elif char in _CLOSE and depth:
            depth -= 1
            if depth == 0:
                out.append(text[start:index + 1])
    return out


def _tools_block(text: str, path: str) -> list[Any]:
    """The tools of one ``<tools>`` block: a list, one object, or objects one after another."""
    try:
        value = _literal(text, path)
    except FormatError:
        parts = _top_level_values(text)
        if len(parts) < 2:
            raise
        value = [_literal(part, path) for part in parts]
    return value if isinstance(value, list) else [value]


def _tool_spec(raw: Any, path: str) -> dict[str, Any]:
    if isinstance(raw, Mapping) and isinstance(raw.get("function"), Mapping):
        raw = raw["function"]
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise FormatError(f"{path}: a tool needs a string name")
    spec: dict[str, Any] = {"name": raw["name"], "description": str(raw.get("description", ""))}
    parameters = raw.get("parameters", {})
    if not isinstance(parameters, Mapping):
        raise FormatError(f"{path}.parameters: expected a JSON object")
    spec["parameters"] = dict(parameters)
    return spec


def _tools(record: Mapping[str, Any], turns: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    raw: Any = record.get("tools")
    path = "tools"
    if isinstance(raw, str):
        raw = _literal(raw, path) if raw.strip() else None
    if raw is None or raw == []:
        raw = []
        for index, turn in enumerate(turns):
            if turn.get("from") == "system":
                blocks = [b for b in _TOOLS.findall(str(turn.get("value", ""))) if b.strip()]
                for number, block in enumerate(blocks):
                    path = f"conversations[{index}].value<tools>"
                    if len(blocks) > 1:
                        path += f"[block {number}]"
                    raw.extend(_tools_block(block, path))
                path = f"conversations[{index}].value<tools>"
                break
    if not isinstance(raw, list):
        raise FormatError(f"{path}: expected a list of tools")
    return [_tool_spec(tool, f"{path}[{i}]") for i, tool in enumerate(raw)]


def _assistant(value: str, path: str, counter: list[int]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    reasoning = [m.strip() for m in _THINK.findall(value)]
    calls = []
    for block in _TOOL_CALL.findall(value):
        parsed = _literal(block, f"{path}<tool_call>")
        if not isinstance(parsed, Mapping) or not isinstance(parsed.get("name"), str):
            raise FormatError(f"{path}<tool_call>: expected an object with a string name")
        arguments = parsed.get("arguments", {})
        if isinstance(arguments, str):
            arguments = _literal(arguments, f"{path}<tool_call>.arguments")
        if not isinstance(arguments, Mapping):
            raise FormatError(f"{path}<tool_call>.arguments: expected a JSON object")
        counter[0] += 1
        calls.append({"id": f"call_{counter[0]}", "name": parsed["name"],
                      "arguments": dict(arguments)})
    text = _TOOL_CALL.sub("", _THINK.sub("", value)).strip()
    message["content"] = text
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning"] = "\n\n".join(reasoning)
    return message


def _tool_results(
    value: str, path: str, pending: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    blocks = _TOOL_RESPONSE.findall(value) or [value]
    out = []
    for block in blocks:
        try:
            parsed = _literal(block, f"{path}<tool_response>")
        except FormatError:  # a plain-text result
            parsed = block.strip()
        name = parsed.get("name", "") if isinstance(parsed, Mapping) else ""
        content = parsed.get("content", parsed) if isinstance(parsed, Mapping) else parsed
        # A result answers the oldest open call of the same tool, else the oldest open call.
        match = next((i for i, (_, n) in enumerate(pending) if n == name), 0 if pending else None)
        if match is None:
            raise FormatError(f"{path}: a tool result without an earlier <tool_call>")
        call_id, call_name = pending.pop(match)
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        out.append({"role": "tool", "tool_call_id": call_id, "name": name or call_name,
                    "content": text})
    return out


def from_hermes(record: Any) -> dict[str, Any]:
    """Convert one Hermes/ShareGPT record to a trajectory.

    Raises ``FormatError`` naming the field.
    """
    if not isinstance(record, Mapping):
        raise FormatError(f"<record>: expected a JSON object, got {type(record).__name__}")
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise FormatError("conversations: expected a non-empty list of turns")
    messages: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []
    counter = [0]
    for index, turn in enumerate(turns):
        path = f"conversations[{index}]"
        if not isinstance(turn, Mapping):
            raise FormatError(f"{path}: expected an object")
        role = _ROLE.get(str(turn.get("from")))
        if role is None:
            raise FormatError(f"{path}.from: expected one of {'|'.join(sorted(_ROLE))}")
        value = turn.get("value")
        if not isinstance(value, str):
            raise FormatError(f"{path}.value: expected a string, got {type(value).__name__}")
        if role == "assistant":
            message = _assistant(value, f"{path}.value", counter)
            if "weight" in turn:  # per-turn training weight (0|1), as axolotl's ShareGPT
                problem = weight_problem(turn["weight"], role)
                if problem:
                    raise FormatError(f"{path}.weight: {problem}")
                message["weight"] = turn["weight"]
            pending.extend((c["id"], c["name"]) for c in message.get("tool_calls", []))
            messages.append(message)
        elif role == "tool":
            messages.extend(_tool_results(value, f"{path}.value", pending))
        else:
            messages.append({"role": role, "content": value})
    trajectory_id = record.get("trajectory_id")
    if not isinstance(trajectory_id, str) or not trajectory_id:
        trajectory_id = f"t-{record['id']}" if record.get("id") else content_trajectory_id(record)
    # Our own export carries task_type and the trajectory's task; a NousResearch row's
    # "task" is a label (see the module docstring), so its task is the request itself.
    own_task = record.get("task") if "task_type" in record else None
    tools = _tools(record, turns)
    if tools:
        # The tools travel structured and the chat template renders them for the model, as
        # at serving time; a schema dump left in the system prompt would render twice and
        # roughly double the prompt (the phrase's empty block stays: it is only words).
        for message in messages:
            if message["role"] == "system":
                message["content"] = _TOOLS.sub(
                    lambda m: m.group(0) if not m.group(1).strip() else "",
                    message["content"])
    return {
        "trajectory_id": trajectory_id,
        "task": str(own_task or first_user_text(messages)),
        "task_type": str(record.get("task_type") or record.get("category") or "unknown"),
        "messages": messages,
        "tools": tools,
        "final_response": str(record.get("final_response") or last_assistant_text(messages)),
    }


LABELS = ("category", "subcategory", "task")


def hermes_labels(record: Any) -> dict[str, str]:
    """The NousResearch labels of a record (``category``, ``subcategory``, ``task``), kept
    in the imported event's metadata; none for a record of our own export (its ``task`` is
    the trajectory's task)."""
    if not isinstance(record, Mapping) or "task_type" in record:
        return {}
    return {key: record[key] for key in LABELS
            if isinstance(record.get(key), str) and record[key]}


def _assistant_value(message: Mapping[str, Any]) -> str:
    parts = []
    if message.get("reasoning"):
        parts.append(f"<think>\n{message['reasoning']}\n</think>")
    if message.get("content"):
        parts.append(str(message["content"]))
    for call in message.get("tool_calls", []):
        body = json.dumps({"name": call["name"], "arguments": call["arguments"]},
                          ensure_ascii=False)
        parts.append(f"<tool_call>\n{body}\n</tool_call>")
    return "\n".join(parts)


def _tool_value(message: Mapping[str, Any]) -> str:
    content: Any = message.get("content", "")
    try:
        parsed = json.loads(content)
        # Embed as JSON only what import re-encodes to the same text; a bare "5" or
        # differently spaced JSON stays a string so the round trip is exact.
        if isinstance(parsed, (dict, list)) and json.dumps(parsed, ensure_ascii=False) == content:
            content = parsed
    except ValueError:
        pass
    body = json.dumps({"name": message.get("name", ""), "content": content}, ensure_ascii=False)
    return f"<tool_response>\n{body}\n</tool_response>"


def to_hermes(trajectory: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a trajectory to a Hermes/ShareGPT record (tools in a top-level JSON field)."""
    turns = []
    for message in trajectory["messages"]:
        role = message["role"]
        if role == "assistant":
            turn: dict[str, Any] = {"from": "gpt", "value": _assistant_value(message)}
            if "weight" in message:
                turn["weight"] = message["weight"]
            turns.append(turn)
        elif role == "tool":
            turns.append({"from": "tool", "value": _tool_value(message)})
        else:
            turns.append({"from": "human" if role == "user" else "system",
                          "value": message["content"]})
    return {
        "trajectory_id": trajectory["trajectory_id"],
        "task": trajectory["task"],
        "task_type": trajectory["task_type"],
        "conversations": turns,
        "tools": json.dumps(list(trajectory["tools"]), ensure_ascii=False),
        "final_response": trajectory["final_response"],
    }
