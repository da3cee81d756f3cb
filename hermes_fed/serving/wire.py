"""The OpenAI chat-completions wire: requests, answers, stream chunks, errors.

Shapes follow OpenAI's API reference (``POST /v1/chat/completions``): a request's
``messages`` and ``tools``; an answer ``{"id", "object": "chat.completion", "created",
"model", "choices": [{"index", "message", "finish_reason"}], "usage"}``; with ``stream:
true``, server-sent events of ``chat.completion.chunk`` objects whose ``delta`` carries the
role, content pieces and tool-call pieces (by ``index``), then, when
``stream_options.include_usage`` is set, one chunk with ``choices: []`` and ``usage``, then
``data: [DONE]``. Errors are ``{"error": {"message", "type", "param", "code"}}``.

Both servers of this package use it: the node's gateway (which parses requests and the
upstream's answers) and ``hermes-fed model serve`` (which builds answers).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from hermes_fed.errors import FormatError, HermesFedError

from .conversion import from_openai_messages, tools_from_openai

SSE_DONE = b"data: [DONE]\n\n"
MAX_USER_CHARS = 256


class WireError(HermesFedError):
    """A request or answer that breaks the wire; carries the HTTP status and OpenAI's
    ``type``/``code``/``param`` for the error body."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(str(self), self.type, self.code, self.param)


def error_body(message: str, type: str, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat-completions request.

    ``body`` is the request as the client sent it (forwarded with ``model`` rewritten);
    ``messages`` and ``tools`` are its turns and tools in the trajectory shape.
    """

    body: dict[str, Any]
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    user: str | None


def _param_of(problem: str) -> str | None:
    head = problem.split(":", 1)[0]
    return head if head and " " not in head else None


def parse_chat_request(raw: bytes | Mapping[str, Any]) -> ChatRequest:
    """Parse and validate a request body; raises :class:`WireError` (400) naming the field."""
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise WireError(400, f"the request body is not valid JSON ({exc.msg})",
                            code="invalid_json") from None
    else:
        body = dict(raw)
    if not isinstance(body, dict):
        raise WireError(400, f"the request body must be a JSON object, got {type(body).__name__}",
                        code="invalid_body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise WireError(400, "model: expected a non-empty string", param="model",
                        code="missing_model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise WireError(400, "messages: expected a non-empty list", param="messages",
                        code="invalid_messages")
    try:
        turns = from_openai_messages(messages)
        tools = tools_from_openai(body.get("tools"))
    except FormatError as exc:
        raise WireError(400, str(exc), param=_param_of(str(exc)),
                        code="invalid_value") from None
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise WireError(400, "stream: expected a boolean", param="stream", code="invalid_type")
    options = body.get("stream_options") or {}
    if not isinstance(options, Mapping):
        raise WireError(400, "stream_options: expected an object", param="stream_options",
                        code="invalid_type")
    n = body.get("n", 1)
    if n not in (None, 1):
        raise WireError(400, f"n: only 1 choice per request is supported, got {n!r}", param="n",
                        code="unsupported_value")
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > MAX_USER_CHARS):
        raise WireError(400, f"user: expected a string of at most {MAX_USER_CHARS} characters",
                        param="user", code="invalid_value")
    return ChatRequest(body=body, model=model, messages=turns, tools=tools, stream=stream,
                       include_usage=bool(options.get("include_usage")), user=user or None)


# --- answers ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Completion:
    """An answer: the assistant's message (OpenAI shape), why it stopped, token usage."""

    message: dict[str, Any]
    finish_reason: str | None
    usage: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def parse_completion(raw: bytes) -> Completion:
    """An upstream's non-streamed answer; raises :class:`WireError` (502) when it is not one."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise WireError(502, "the upstream answered with something that is not JSON",
                        type="upstream_error", code="bad_upstream_response") from None
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict) \
            or not isinstance(choices[0].get("message"), dict):
        raise WireError(502, "the upstream's answer has no choices[0].message",
                        type="upstream_error", code="bad_upstream_response")
    message = choices[0]["message"]
    check_answer(message)
    usage = body.get("usage")
    return Completion(message, choices[0].get("finish_reason"),
                      usage if isinstance(usage, dict) else None, body)


def check_answer(message: Mapping[str, Any]) -> None:
    """An upstream's assistant message must convert to a trajectory turn."""
    try:
        from_openai_messages([{**message, "role": message.get("role") or "assistant"}],
                             "choices[0].message")
    except FormatError as exc:
        raise WireError(502, f"the upstream's answer is malformed: {exc}",
                        type="upstream_error", code="bad_upstream_response") from None
    if message.get("role", "assistant") != "assistant":
        raise WireError(502, "the upstream's answer is not an assistant message",
                        type="upstream_error", code="bad_upstream_response")


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def usage_body(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_body(id: str, model: str, message: Mapping[str, Any], finish_reason: str,
                    usage: Mapping[str, Any] | None, created: int | None = None) -> dict[str, Any]:
    return {"id": id, "object": "chat.completion", "created": created or int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": dict(message), "logprobs": None,
                         "finish_reason": finish_reason}],
            "usage": dict(usage) if usage is not None else None}


def chunk_body(id: str, model: str, delta: Mapping[str, Any], finish_reason: str | None = None,
               created: int | None = None) -> dict[str, Any]:
    return {"id": id, "object": "chat.completion.chunk", "created": created or int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": dict(delta), "logprobs": None,
                         "finish_reason": finish_reason}]}


def usage_chunk_body(id: str, model: str, usage: Mapping[str, Any],
                     created: int | None = None) -> dict[str, Any]:
    return {"id": id, "object": "chat.completion.chunk", "created": created or int(time.time()),
            "model": model, "choices": [], "usage": dict(usage)}


def sse(obj: Any) -> bytes:
    """One server-sent event holding ``obj`` as JSON."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class StreamAssembler:
    """Folds ``chat.completion.chunk`` objects into the answer they spell.

    Content pieces concatenate; tool-call pieces concatenate per ``index`` (the first piece
    of a call carries its id and name, the following ones pieces of the arguments string);
    the last non-null ``finish_reason`` and the ``usage`` chunk are kept.
    """

    def __init__(self) -> None:
        self._content: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.chunks = 0

    def add(self, chunk: Any) -> None:
        """Fold one chunk; raises :class:`WireError` (502) for a chunk that is not one."""
        if not isinstance(chunk, dict):
            raise WireError(502, "the upstream streamed a chunk that is not an object",
                            type="upstream_error", code="bad_upstream_response")
        self.chunks += 1
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise WireError(502, "the upstream streamed a chunk without choices",
                            type="upstream_error", code="bad_upstream_response")
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                raise WireError(502, "the upstream streamed a choice without a delta",
                                type="upstream_error", code="bad_upstream_response")
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
            content = delta.get("content")
            if isinstance(content, str):
                self._content.append(content)
            for piece in delta.get("tool_calls") or ():
                self._add_call(piece)

    def _add_call(self, piece: Any) -> None:
        if not isinstance(piece, dict) or not isinstance(piece.get("index", 0), int):
            raise WireError(502, "the upstream streamed a malformed tool-call piece",
                            type="upstream_error", code="bad_upstream_response")
        call = self._calls.setdefault(int(piece.get("index", 0)),
                                      {"id": "", "name": "", "arguments": []})
        if isinstance(piece.get("id"), str):
            call["id"] = piece["id"]
        function = piece.get("function") or {}
        if isinstance(function.get("name"), str):
            call["name"] += function["name"]
        if isinstance(function.get("arguments"), str):
            call["arguments"].append(function["arguments"])

    def message(self) -> dict[str, Any]:
        """The assembled assistant message, in OpenAI's shape."""
        content = "".join(self._content)
        out: dict[str, Any] = {"role": "assistant", "content": content}
        if self._calls:
            out["content"] = content or None
            out["tool_calls"] = [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": "".join(c["arguments"])}}
                for _, c in sorted(self._calls.items())]
        return out
