"""Parsing the model's answers (hermes_fed.serving.engine.parse_answer)."""

from __future__ import annotations

import json

from hermes_fed.serving.engine import parse_answer


def test_a_template_tool_call_becomes_an_openai_call() -> None:
    content, calls = parse_answer('<tool_call>{"name": "calc", "arguments": {"e": "2+3"}}'
                                  "</tool_call><|im_end|>trailing junk")
    assert content == ""
    assert calls[0]["type"] == "function" and calls[0]["id"].startswith("call_")
    assert calls[0]["function"]["name"] == "calc"
    assert json.loads(calls[0]["function"]["arguments"]) == {"e": "2+3"}


def test_the_forced_opening_is_part_of_the_answer() -> None:
    _content, calls = parse_answer('{"x": 1}}</tool_call>',
                                   '<tool_call>{"name": "f", "arguments": ')
    assert calls[0]["function"]["name"] == "f"
    assert json.loads(calls[0]["function"]["arguments"]) == {"x": 1}


def test_a_call_that_does_not_parse_stays_text() -> None:
    text = '<tool_call>{"name": "f", "arguments": {oops}}</tool_call>'
    assert parse_answer(text) == (text, [])


def test_text_around_calls_is_kept_and_cut_at_the_end_marker() -> None:
    content, calls = parse_answer('Let me see. <tool_call>{"name": "f", "arguments": {}}'
                                  "</tool_call> done<|im_end|><|im_start|>user")
    assert content == "Let me see.  done"
    assert len(calls) == 1
