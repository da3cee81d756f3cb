"""``hermes-fed model serve DIR``: the OpenAI chat API over a base model and LoRA adapters.

Endpoints (vLLM's, so the node's gateway drives this server and vLLM the same way):
``POST /v1/chat/completions`` (tools, tool calls, ``stream: true`` with the usage chunk),
``GET /v1/models`` (the base under its served name, then each adapter with the base as
``parent``), ``POST /v1/load_lora_adapter {"lora_name", "lora_path"}`` (a loaded name is
refused with 400, as vLLM does), ``POST /v1/unload_lora_adapter {"lora_name"}``, and
``GET /health``. With an API key configured, ``/v1/*`` needs ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from hermes_fed.errors import ConfigError

from .engine import EngineError, Generation, ModelEngine, SamplingParams
from .wire import (
    SSE_DONE,
    WireError,
    chunk_body,
    completion_body,
    completion_id,
    error_body,
    parse_chat_request,
    sse,
    usage_body,
    usage_chunk_body,
)

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ModelServeConfig:
    """``hermes-fed model serve`` settings; every flag comes from a field here."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=8000, metadata={"help": "port to listen on"})
    served_model_name: str = field(
        default="base", metadata={"help": "the name the base model answers to"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    max_loras: int = field(default=8, metadata={"help": "most adapters loaded at once"})
    api_key_env: str = field(
        default="", metadata={"help": "environment variable holding the bearer token /v1/* "
                                     "needs; empty: no token"})

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port must be 0..65535, got {self.port!r}")
        if not self.served_model_name:
            raise ConfigError("served_model_name must not be empty")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device must be cpu or cuda, got {self.device!r}")
        if self.max_loras < 1:
            raise ConfigError(f"max_loras must be >= 1, got {self.max_loras!r}")
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise ConfigError(f"api_key_env: the environment variable {self.api_key_env!r} "
                              "is not set")


def _error(status: int, message: str, code: str | None, type: str = "invalid_request_error",
           param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, type, code, param), status_code=status)


def _wire_error(exc: WireError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


def _engine_error(exc: EngineError) -> JSONResponse:
    kind = "not_found_error" if exc.status == 404 else "invalid_request_error"
    return _error(exc.status, str(exc), exc.code, kind)


class ModelServer:
    """The Starlette app around one :class:`ModelEngine`."""

    def __init__(self, engine: ModelEngine, api_key: str = "") -> None:
        self.engine = engine
        self._expected = f"Bearer {api_key}".encode() if api_key else None
        # One generation at a time, in arrival order, off the event loop.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self.created = int(time.time())
        self.app = Starlette(routes=[
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/load_lora_adapter", self.load_adapter, methods=["POST"]),
            Route("/v1/unload_lora_adapter", self.unload_adapter, methods=["POST"]),
        ])

    def _refused(self, request: Request) -> JSONResponse | None:
        if self._expected is None:
            return None
        supplied = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(supplied, self._expected):
            return None
        return _error(401, "missing or wrong bearer token", "invalid_api_key",
                      "authentication_error")

    async def _json(self, request: Request) -> Any:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise WireError(413, f"the request body exceeds {MAX_BODY_BYTES} bytes",
                            code="request_too_large")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise WireError(400, "the request body is not valid JSON", code="invalid_json") from None

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        base = {"id": self.engine.served_name, "object": "model", "created": self.created,
                "owned_by": "hermes-fed", "root": str(self.engine.model_dir), "parent": None}
        adapters = [{"id": name, "object": "model", "created": self.created,
                     "owned_by": "hermes-fed", "root": str(path),
                     "parent": self.engine.served_name}
                    for name, path in self.engine.adapters.items()]
        return JSONResponse({"object": "list", "data": [base, *adapters]})

    async def load_adapter(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            body = await self._json(request)
        except WireError as exc:
            return _wire_error(exc)
        name = body.get("lora_name") if isinstance(body, Mapping) else None
        path = body.get("lora_path") if isinstance(body, Mapping) else None
        if not isinstance(name, str) or not name or not isinstance(path, str) or not path:
            return _error(400, "lora_name and lora_path: expected non-empty strings",
                          "invalid_value")
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._pool, self.engine.load_adapter, name, path)
        except EngineError as exc:
            return _engine_error(exc)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    async def unload_adapter(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            body = await self._json(request)
        except WireError as exc:
            return _wire_error(exc)
        name = body.get("lora_name") if isinstance(body, Mapping) else None
        if not isinstance(name, str) or not name:
            return _error(400, "lora_name: expected a non-empty string", "invalid_value")
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._pool, self.engine.unload_adapter, name)
        except EngineError as exc:
            return _engine_error(exc)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    async def chat(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            parsed = parse_chat_request(await self._json(request))
            params = SamplingParams.from_request(parsed.body, self.engine.max_positions)
        except WireError as exc:
            return _wire_error(exc)
        except EngineError as exc:
            return _engine_error(exc)
        if parsed.model not in self.engine.names():
            return _error(404, f"The model `{parsed.model}` does not exist.", "model_not_found",
                          "not_found_error", "model")
        loop = asyncio.get_running_loop()
        if not parsed.stream:
            try:
                generation = await loop.run_in_executor(
                    self._pool, lambda: self.engine.generate(parsed.model, parsed.messages,
                                                             parsed.tools, params))
            except EngineError as exc:
                return _engine_error(exc)
            usage = usage_body(generation.prompt_tokens, generation.completion_tokens)
            return JSONResponse(completion_body(completion_id(), parsed.model, generation.message,
                                                generation.finish_reason, usage))
        return StreamingResponse(self._stream(parsed.model, parsed.messages, parsed.tools, params,
                                              parsed.include_usage),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def _stream(self, model: str, messages: list[dict[str, Any]],
                      tools: list[dict[str, Any]], params: SamplingParams,
                      include_usage: bool) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()
        cid, created = completion_id(), int(time.time())

        def on_text(text: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, text)

        def run() -> Generation:
            try:
                return self.engine.generate(model, messages, tools, params, on_text, cancel)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        future = loop.run_in_executor(self._pool, run)
        try:
            yield sse(chunk_body(cid, model, {"role": "assistant", "content": ""},
                                 created=created))
            streamed = ""
            while (piece := await queue.get()) is not None:
                streamed += piece
                yield sse(chunk_body(cid, model, {"content": piece}, created=created))
            try:
                generation = await future
            except EngineError as exc:
                yield sse(error_body(str(exc), "invalid_request_error", exc.code))
                yield SSE_DONE
                return
            content = generation.message.get("content") or ""
            if content.startswith(streamed) and len(content) > len(streamed):
                yield sse(chunk_body(cid, model, {"content": content[len(streamed):]},
                                     created=created))
            for index, call in enumerate(generation.message.get("tool_calls") or ()):
                yield sse(chunk_body(cid, model, {"tool_calls": [
                    {"index": index, "id": call["id"], "type": "function",
                     "function": {"name": call["function"]["name"],
                                  "arguments": call["function"]["arguments"]}}]},
                    created=created))
            yield sse(chunk_body(cid, model, {}, generation.finish_reason, created=created))
            if include_usage:
                yield sse(usage_chunk_body(cid, model, usage_body(
                    generation.prompt_tokens, generation.completion_tokens), created=created))
            yield SSE_DONE
        finally:
            cancel.set()  # a client that left stops the generation at its next token


def serve(model_dir: str | Path, config: ModelServeConfig,
          loras: Mapping[str, str] | None = None) -> None:
    """Load the model (and adapters), then serve until SIGINT/SIGTERM."""
    import uvicorn

    engine = ModelEngine(model_dir, config.served_model_name, config.device, config.max_loras)
    for name, path in (loras or {}).items():
        engine.load_adapter(name, path)
    api_key = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
    server = ModelServer(engine, api_key)
    log.info("event=model_serve_started model_dir=%s host=%s port=%d adapters=%d",
             model_dir, config.host, config.port, len(engine.adapters))
    uvicorn.run(server.app, host=config.host, port=config.port, log_level="warning",
                access_log=False)
