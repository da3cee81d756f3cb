"""The gateway's upstream: any OpenAI-compatible server (``hermes-fed model serve``, vLLM).

Calls go over one ``httpcore`` connection pool (httpx's transport, without httpx's request
and response models: about 0.4 ms less CPU per call here, which is most of what the
gateway's own HTTP hop costs). Failures become OpenAI-style errors for the
agent: a timeout is 504 ``upstream_timeout``, a refused connection 502
``upstream_unavailable``, a 5xx or an answer that is not the API's shape 502
``upstream_error`` / ``bad_upstream_response``; a 4xx is the caller's own mistake and is
passed through with the upstream's status and message.

Adapters are loaded by versioned name with vLLM's runtime endpoint (``POST
/v1/load_lora_adapter``, which ``model serve`` implements too) before anyone is routed to
them; a name the upstream holds already is left alone, never reloaded in place.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpcore
import orjson

from hermes_fed.serving.wire import WireError

log = logging.getLogger(__name__)


def _message_of(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:500]
        if isinstance(parsed.get("message"), str):
            return str(parsed["message"])[:500]
    return body[:200].decode("utf-8", "replace")


class UpstreamError(WireError):
    """The upstream failed (not the caller): counted, and an error signal for the session."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(status, message, type="upstream_error", code=code)


class Upstream:
    """An OpenAI-compatible server at ``base_url`` (``/v1`` is appended)."""

    def __init__(self, base_url: str, timeout_s: float, api_key: str = "") -> None:
        self.base_url = base_url.rstrip("/") + "/v1"
        self._headers = [(b"content-type", b"application/json")]
        if api_key:
            self._headers.append((b"authorization", f"Bearer {api_key}".encode()))
        self._timeouts = {"connect": min(timeout_s, 10.0), "read": timeout_s,
                          "write": timeout_s, "pool": timeout_s}
        self._pool = httpcore.AsyncConnectionPool(max_connections=256,
                                                  max_keepalive_connections=64)

    async def close(self) -> None:
        await self._pool.aclose()

    @staticmethod
    def _failure(exc: Exception) -> UpstreamError:
        if isinstance(exc, httpcore.TimeoutException):
            return UpstreamError(504, "the upstream did not answer in time", "upstream_timeout")
        if isinstance(exc, httpcore.ConnectError):
            return UpstreamError(502, "the upstream is unreachable", "upstream_unavailable")
        return UpstreamError(502, f"the upstream connection failed ({type(exc).__name__})",
                             "upstream_error")

    @staticmethod
    def _check(status: int, body: bytes) -> None:
        if status < 400:
            return
        message = _message_of(body)
        if status >= 500:
            raise UpstreamError(502, f"the upstream failed with {status}: {message}",
                                "upstream_error")
        code = "model_not_found" if status == 404 else "upstream_rejected"
        raise WireError(status, message, type="invalid_request_error", code=code)

    async def _request(self, method: str, path: str, body: bytes | None = None
                       ) -> tuple[int, bytes]:
        try:
            response = await self._pool.request(
                method, self.base_url + path, headers=self._headers, content=body,
                extensions={"timeout": self._timeouts})
        except httpcore.TimeoutException as exc:
            raise self._failure(exc) from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol,
                OSError) as exc:
            raise self._failure(exc) from None
        return response.status, response.content

    async def chat(self, body: Mapping[str, Any]) -> bytes:
        """A non-streamed completion; the answer's raw bytes."""
        status, content = await self._request("POST", "/chat/completions", orjson.dumps(body))
        self._check(status, content)
        return content

    @asynccontextmanager
    async def stream(self, body: Mapping[str, Any]) -> AsyncIterator[AsyncIterator[bytes]]:
        """A streamed completion: yields an iterator over the ``data:`` payloads of its
        server-sent events (``[DONE]`` included); the connection closes on exit."""
        try:
            context = self._pool.stream("POST", self.base_url + "/chat/completions",
                                        headers=self._headers, content=orjson.dumps(body),
                                        extensions={"timeout": self._timeouts})
            response = await context.__aenter__()
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
                OSError) as exc:
            raise self._failure(exc) from None
        try:
            if response.status >= 400:
                self._check(response.status, await response.aread())
            yield self._payloads(response)
        finally:
            await context.__aexit__(None, None, None)

    async def _payloads(self, response: httpcore.Response) -> AsyncIterator[bytes]:
        buffer = b""
        try:
            async for piece in response.aiter_stream():
                buffer += piece
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.startswith(b"data:"):
                        yield line[5:].strip()
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
                OSError) as exc:
            raise self._failure(exc) from None
        if buffer.startswith(b"data:"):
            yield buffer[5:].strip()

    async def models(self) -> list[str]:
        status, content = await self._request("GET", "/models")
        self._check(status, content)
        try:
            return [str(m["id"]) for m in orjson.loads(content)["data"]]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise UpstreamError(502, "the upstream's /v1/models is not a model list",
                                "bad_upstream_response") from None

    async def load_adapter(self, name: str, path: str) -> bool:
        """Load an adapter under ``name``; False when the upstream holds the name already."""
        status, content = await self._request(
            "POST", "/load_lora_adapter", orjson.dumps({"lora_name": name, "lora_path": path}))
        if status == 400 and "already been loaded" in _message_of(content):
            return False
        self._check(status, content)
        log.info("event=adapter_loaded_upstream name=%s", name)
        return True
