"""A fast OpenAI-compatible upstream for the gateway bench: it answers at once.

Bench fixture only: the gateway bench puts the gateway and LiteLLM's proxy in front of
this stub, so what they add is measured against a direct call to the same stub. Tests use
the real servers (``model serve``, vLLM), never this.

    .venv/bin/python bench/gateway/fast_upstream.py --port 8801

``POST /v1/chat/completions`` answers a fixed assistant message (JSON, or server-sent
events with ``"stream": true``: a role chunk, ``--chunks`` content chunks, a finish chunk,
the usage chunk when ``stream_options.include_usage`` is set, then ``[DONE]``);
``GET /v1/models`` lists the models it has seen asked for, ``GET /health`` is 200.
Starlette on uvicorn (uvloop and httptools when installed), one process, no access log.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

ANSWER = "The order shipped on Tuesday and arrives in two days."


def build_app(chunks: int = 4) -> Starlette:
    """The stub's ASGI app; ``chunks`` content deltas per streamed answer."""
    ids = itertools.count(1)
    seen: dict[str, None] = {"bench-model": None}
    words = ANSWER.split(" ")
    per_chunk = max(1, -(-len(words) // chunks))
    pieces = [" ".join(words[i:i + per_chunk]) + " " for i in range(0, len(words), per_chunk)]
    pieces[-1] = pieces[-1].rstrip()
    usage = {"prompt_tokens": 20, "completion_tokens": len(words), "total_tokens": 20 + len(words)}

    async def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "bench"} for name in seen]})

    async def chat(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            model = str(body["model"])
            _ = body["messages"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": {"message": "body must be JSON with model and messages",
                                           "type": "invalid_request_error", "code": None}}, status_code=400)
        seen.setdefault(model, None)
        cid, created = f"chatcmpl-stub-{next(ids)}", int(time.time())
        if not body.get("stream"):
            return JSONResponse({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                             "finish_reason": "stop", "logprobs": None}],
                "usage": usage})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(_events(cid, created, model, pieces, usage if include_usage else None),
                                 media_type="text/event-stream")

    return Starlette(routes=[
        Route("/health", health), Route("/v1/models", models),
        Route("/v1/chat/completions", chat, methods=["POST"]),
    ])


async def _events(cid: str, created: int, model: str, pieces: list[str],
                  usage: dict[str, int] | None) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    yield chunk({"role": "assistant", "content": ""}, None)
    for piece in pieces:
        yield chunk({"content": piece}, None)
    yield chunk({}, "stop")
    if usage is not None:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [], "usage": usage}
        yield b"data: " + json.dumps(body).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


def start_fast_upstream(log_path: Path, *, chunks: int = 4, python: str = sys.executable) -> tuple[Any, str]:
    """Run the stub as a child process on a free loopback port: (its ChildServer, its base URL).

    Its own process, so the bench client's Python never shares the stub's GIL.
    """
    root = Path(__file__).resolve().parents[2]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from hermes_fed.serving.child_process import ChildServer, free_port

    port = free_port()
    child = ChildServer("fast-upstream", [python, str(Path(__file__).resolve()), "--port", str(port),
                                          "--chunks", str(chunks)],
                        env=dict(os.environ), health_url=f"http://127.0.0.1:{port}/health", log_path=log_path)
    child.start(timeout_s=60.0)
    return child, f"http://127.0.0.1:{port}/v1"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8801, help="TCP port (default 8801)")
    parser.add_argument("--chunks", type=int, default=4, help="content chunks per streamed answer (4)")
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(build_app(args.chunks), host=args.host, port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
