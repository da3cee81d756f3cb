"""A fast OpenAI-compatible upstream that answers at once (tests and bench/gateway).

``python -m tests.integration.gateway.stub_upstream PORT``. It answers ``echo: <last user
text>``, or a call of the first tool when tools are offered and the last turn is the
user's; with ``stream: true`` the answer comes in chunks, then the usage chunk when asked.
A last user text starting ``MODE:`` misbehaves on purpose: ``MODE:slow`` answers after 30 s,
``MODE:500`` fails, ``MODE:garbage`` answers HTML, ``MODE:drop`` ends a stream midway
without ``[DONE]``, ``MODE:badchunk`` streams a chunk that is not JSON, ``MODE:slowstream``
streams one chunk a second for 30 s. ``/v1/load_lora_adapter`` refuses a loaded name, as
vLLM does; a path containing ``unloadable`` fails to load. ``STUB_DELAY_MS`` in the
environment: every answer waits that long first (a model's time to answer, for benches).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

LOADED: set[str] = set()


def _last_user(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            content = m.get("content")
            return content if isinstance(content, str) else ""
    return ""


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    messages = body["messages"]
    if body.get("tools") and messages[-1].get("role") == "user":
        tool = body["tools"][0]["function"]["name"]
        return {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_" + uuid.uuid4().hex[:12], "type": "function",
             "function": {"name": tool, "arguments": orjson.dumps(
                 {"query": _last_user(messages)}).decode()}}]}
    return {"role": "assistant", "content": f"echo: {_last_user(messages)}"}


def _chunk(cid: str, model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    return b"data: " + orjson.dumps({
        "id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
        "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"


DELAY_S = float(os.environ.get("STUB_DELAY_MS", "0")) / 1000.0


async def chat(request: Request) -> Response:
    body = orjson.loads(await request.body())
    if DELAY_S:
        await asyncio.sleep(DELAY_S)
    mode = _last_user(body["messages"])
    model = body["model"]
    if mode.startswith("MODE:slow") and not mode.startswith("MODE:slowstream"):
        await asyncio.sleep(30)
    if mode.startswith("MODE:500"):
        return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, status_code=500)
    if mode.startswith("MODE:garbage"):
        return Response(b"<html>oops</html>", media_type="text/html")
    answer = _answer(body)
    usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    cid = "chatcmpl-" + uuid.uuid4().hex
    if not body.get("stream"):
        finish = "tool_calls" if answer.get("tool_calls") else "stop"
        return JSONResponse({"id": cid, "object": "chat.completion", "created": int(time.time()),
                             "model": model, "choices": [{"index": 0, "message": answer,
                                                          "finish_reason": finish}],
                             "usage": usage})
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def events() -> Any:
        yield _chunk(cid, model, {"role": "assistant", "content": ""})
        if mode.startswith("MODE:slowstream"):
            for i in range(30):
                yield _chunk(cid, model, {"content": f"{i} "})
                await asyncio.sleep(1)
        if mode.startswith("MODE:badchunk"):
            yield b"data: {not json\n\n"
            return
        if answer.get("tool_calls"):
            call = answer["tool_calls"][0]
            yield _chunk(cid, model, {"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                      "function": {"name": call["function"]["name"],
                                                                   "arguments": ""}}]})
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                yield _chunk(cid, model, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            finish = "tool_calls"
        else:
            text = answer["content"]
            third = max(1, len(text) // 3)
            for piece in (text[:third], text[third:2 * third], text[2 * third:]):
                yield _chunk(cid, model, {"content": piece})
                if mode.startswith("MODE:drop"):
                    return  # the connection ends without [DONE]
            finish = "stop"
        yield _chunk(cid, model, {}, finish)
        if include_usage:
            yield b"data: " + orjson.dumps({"id": cid, "object": "chat.completion.chunk",
                                            "created": int(time.time()), "model": model,
                                            "choices": [], "usage": usage}) + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def load(request: Request) -> Response:
    body = orjson.loads(await request.body())
    name, path = body["lora_name"], body["lora_path"]
    if name in LOADED:
        return JSONResponse({"error": {"message": f"The lora adapter '{name}' has already been "
                                                  "loaded.", "type": "BadRequestError"}},
                            status_code=400)
    if "unloadable" in path:
        return JSONResponse({"error": {"message": "cannot load", "type": "BadRequestError"}},
                            status_code=400)
    LOADED.add(name)
    return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")


async def models(_request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": n, "object": "model"}
                                                    for n in ["base", *sorted(LOADED)]]})


async def health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                        Route("/v1/load_lora_adapter", load, methods=["POST"]),
                        Route("/v1/models", models), Route("/health", health)])

if __name__ == "__main__":
    import uvicorn

    # A "slow" answer sleeps 30 s: on stop, do not wait for it (it held teardown 25 s).
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False, timeout_graceful_shutdown=1)
