"""The OpenAI wire (hermes_fed.serving.wire) and OpenAI <-> trajectory conversion."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from hermes_fed.errors import FormatError
from hermes_fed.formats.trajectory import trajectory_problem
from hermes_fed.serving.conversion import (
    from_openai_messages,
    is_openai_shaped,
    to_openai_message,
    tools_from_openai,
)
from hermes_fed.serving.wire import StreamAssembler, WireError, parse_chat_request, parse_completion

OPENAI = [
    {"role": "developer", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
    {"role": "user", "content": "2+3?"},
    {"role": "assistant", "content": None,
     "tool_calls": [{"id": "c1", "type": "function",
                     "function": {"name": "calc", "arguments": "{\"e\": \"2+3\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "5"},
    {"role": "assistant", "content": "5"},
]


def test_openai_messages_convert_to_the_trajectory_shape_and_back() -> None:
    # Execute
    turns = from_openai_messages(OPENAI)

    # Assert
    assert turns == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+3?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": "c1", "name": "calc", "arguments": {"e": "2+3"}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "calc", "content": "5"},
        {"role": "assistant", "content": "5"},
    ]
    trajectory = {"trajectory_id": "t", "task": "2+3?", "task_type": "x", "messages": turns,
                  "tools": [], "final_response": "5"}
    assert trajectory_problem(trajectory) is None
    back = [to_openai_message(t) for t in turns]
    assert back[2]["content"] is None
    assert json.loads(back[2]["tool_calls"][0]["function"]["arguments"]) == {"e": "2+3"}
    assert from_openai_messages(back) == turns
    assert is_openai_shaped(OPENAI) and not is_openai_shaped(turns)


def test_a_call_with_arguments_that_are_not_an_object_is_kept_as_text() -> None:
    turns = from_openai_messages([{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "calc", "arguments": "{oops"}}]}])
    assert turns == [{"role": "assistant",
                      "content": '<tool_call>{"name": "calc", "arguments": {oops}</tool_call>'}]


@pytest.mark.parametrize(("messages", "needle"), [
    ([{"role": "wizard", "content": "x"}], r"messages\[0\].role"),
    ([{"role": "function", "content": "x"}], r"messages\[0\].role"),
    ([{"role": "user", "content": 5}], r"messages\[0\].content"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "only text parts"),
    ([{"role": "tool", "content": "x"}], "tool_call_id"),
    ([{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}],
     r"tool_calls\[0\].id"),
    (["not an object"], "expected an object"),
])
def test_bad_messages_name_the_field(messages: list[Any], needle: str) -> None:
    with pytest.raises(FormatError, match=needle):
        from_openai_messages(messages)


def test_tools_convert() -> None:
    assert tools_from_openai([{"type": "function", "function": {"name": "f"}}]) == [
        {"name": "f", "description": "", "parameters": {}}]
    with pytest.raises(FormatError, match=r"tools\[0\]"):
        tools_from_openai([{"type": "function", "function": {"parameters": {}}}])


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_body"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "missing_model"),
    (b'{"model": "m", "messages": []}', 400, "invalid_messages"),
    (b'{"model": "m", "messages": [{"role": "robot", "content": "x"}]}', 400, "invalid_value"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}', 400,
     "unsupported_value"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400,
     "invalid_type"),
])
def test_bad_requests_get_openai_errors(body: bytes, status: int, code: str) -> None:
    with pytest.raises(WireError) as caught:
        parse_chat_request(body)
    assert (caught.value.status, caught.value.code) == (status, code)
    error = caught.value.body()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


def test_a_good_request_parses() -> None:
    request = parse_chat_request(orjson.dumps({
        "model": "m", "messages": OPENAI, "stream": True, "user": "u-1",
        "stream_options": {"include_usage": True}, "tools": [{"type": "function",
                                                              "function": {"name": "calc"}}]}))
    assert (request.stream, request.include_usage, request.user) == (True, True, "u-1")
    assert request.messages[0]["role"] == "system"
    assert request.tools[0]["name"] == "calc"


@pytest.mark.parametrize("raw", [b"<html>", b'{"choices": []}', b'{"choices": [{"message": 3}]}',
                                 b'{"choices": [{"message": {"role": "user", "content": "x"}}]}'])
def test_garbage_from_the_upstream_is_a_502(raw: bytes) -> None:
    with pytest.raises(WireError) as caught:
        parse_completion(raw)
    assert caught.value.status == 502


def test_stream_chunks_assemble_into_the_message() -> None:
    # Prepare: pieces as vLLM and OpenAI stream them (a call's arguments in pieces)
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": "Let me "}}]},
        {"choices": [{"index": 0, "delta": {"content": "check."}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "c9", "type": "function", "function": {"name": "calc", "arguments": ""}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": "{\"e\": "}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": "\"1\"}"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
    ]
    assembler = StreamAssembler()

    # Execute
    for chunk in chunks:
        assembler.add(chunk)

    # Assert
    assert assembler.message() == {
        "role": "assistant", "content": "Let me check.",
        "tool_calls": [{"id": "c9", "type": "function",
                        "function": {"name": "calc", "arguments": "{\"e\": \"1\"}"}}]}
    assert assembler.finish_reason == "tool_calls"
    assert assembler.usage == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    with pytest.raises(WireError):
        assembler.add({"choices": [{"delta": 5}]})
