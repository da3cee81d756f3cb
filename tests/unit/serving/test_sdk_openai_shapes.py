"""The SDK records OpenAI-shaped messages and tools as trajectories (no node needed)."""

from __future__ import annotations

import pytest

from hermes_fed.client import IngestClient
from hermes_fed.errors import SchemaError

TOKEN = "sdk-token-0123456789"


def test_openai_shaped_turns_become_the_trajectory_shape() -> None:
    # Prepare
    client = IngestClient("127.0.0.1:9", tenant_id="acme", token=TOKEN)
    session = client.session("u-1", "m1")

    # Execute
    session.trajectory(task="2+3?", messages=[
        {"role": "user", "content": "2+3?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "calc", "arguments": "{\"e\": \"2+3\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "5"},
        {"role": "assistant", "content": "5"}],
        tools=[{"type": "function", "function": {"name": "calc", "parameters": {}}}])

    # Assert
    data = client._buffer[-1].data
    assert data["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "name": "calc", "arguments": {"e": "2+3"}}]}
    assert data["messages"][2]["name"] == "calc"
    assert data["tools"] == [{"name": "calc", "description": "", "parameters": {}}]
    assert data["final_response"] == "5"


def test_a_bad_openai_shape_fails_at_the_call_site_naming_the_field() -> None:
    client = IngestClient("127.0.0.1:9", tenant_id="acme", token=TOKEN)
    session = client.session("u-1", "m1")
    with pytest.raises(SchemaError, match=r"messages\[0\].tool_calls\[0\]"):
        session.trajectory(task="x", messages=[{"role": "assistant", "content": None,
                                                "tool_calls": [{"type": "function"}]}])
    assert client.pending == 1  # only SessionStarted
