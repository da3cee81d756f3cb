"""``hermes-fed model serve``: the OpenAI API and vLLM's adapter endpoints (real process)."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from .stack import Server, make_adapter

pytestmark = pytest.mark.slow
MESSAGES = [{"role": "user", "content": "Say hello to the team"}]


def test_adapters_load_by_name_answer_differently_and_unload(workdir: Path,
                                                             served_model: Server) -> None:
    # Prepare
    adapter = make_adapter(workdir / "serve-adapter", seed=11, scale=1.0)
    client = openai.OpenAI(base_url=served_model.url + "/v1", api_key="unused", max_retries=0)

    # Execute
    loaded = httpx.post(served_model.url + "/v1/load_lora_adapter",
                        json={"lora_name": "v7", "lora_path": str(adapter)})
    again = httpx.post(served_model.url + "/v1/load_lora_adapter",
                       json={"lora_name": "v7", "lora_path": str(adapter)})
    listed = [m.id for m in client.models.list().data]
    base = client.chat.completions.create(model="base", messages=MESSAGES, temperature=0,  # type: ignore[arg-type]
                                          max_tokens=24)
    tuned = client.chat.completions.create(model="v7", messages=MESSAGES, temperature=0,  # type: ignore[arg-type]
                                           max_tokens=24)
    base_again = client.chat.completions.create(model="base", messages=MESSAGES, temperature=0,  # type: ignore[arg-type]
                                                max_tokens=24)
    unloaded = httpx.post(served_model.url + "/v1/unload_lora_adapter", json={"lora_name": "v7"})
    missing = httpx.post(served_model.url + "/v1/unload_lora_adapter", json={"lora_name": "v7"})

    # Assert
    assert loaded.status_code == 200 and "added successfully" in loaded.text
    assert again.status_code == 400  # a loaded name is never reloaded in place (vLLM #42125)
    assert "already been loaded" in again.json()["error"]["message"]
    assert listed == ["base", "v7"]
    assert tuned.choices[0].message != base.choices[0].message
    assert base_again.choices[0].message == base.choices[0].message  # the adapter is off for base
    assert base.usage is not None and base.usage.prompt_tokens > 0
    assert unloaded.status_code == 200 and missing.status_code == 404
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="v7", messages=MESSAGES)  # type: ignore[arg-type]


def test_streaming_matches_the_non_streamed_answer(served_model: Server) -> None:
    client = openai.OpenAI(base_url=served_model.url + "/v1", api_key="unused", max_retries=0)
    whole = client.chat.completions.create(model="base", messages=MESSAGES, temperature=0,  # type: ignore[arg-type]
                                           max_tokens=20)
    chunks = list(client.chat.completions.create(
        model="base", messages=MESSAGES, temperature=0, max_tokens=20, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    if whole.choices[0].message.tool_calls:
        assert calls
    else:
        assert text == whole.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "/nonexistent"}, 400),
    ("/v1/load_lora_adapter", {"lora_name": "x"}, 400),
    ("/v1/chat/completions", {"model": "base", "messages": [{"role": "user", "content": "x"}],
                              "temperature": 9}, 400),
    ("/v1/chat/completions", {"model": "base", "messages": [{"role": "user", "content": "x"}],
                              "tool_choice": "required"}, 400),
])
def test_bad_requests_get_openai_errors(served_model: Server, path: str, body: dict[str, object],
                                        status: int) -> None:
    response = httpx.post(served_model.url + path, json=body)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
