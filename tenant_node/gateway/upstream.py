"""The gateway's upstream: any OpenAI-compatible server (``hermes-fed model serve``, vLLM).

Calls go over one pooled ``httpx.AsyncClient``. Failures become OpenAI-style errors for the
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

import httpx
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

    def __init__(self, base_url: str, timeout_s: float, api_key: str = "",
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/") + "/v1"
        self.client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))

    async def close(self) -> None:
        await self.client.aclose()

    @staticmethod
    def _failure(exc: httpx.HTTPError) -> UpstreamError:
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamError(504, "the upstream did not answer in time", "upstream_timeout")
        if isinstance(exc, httpx.ConnectError):
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

    async def chat(self, body: Mapping[str, Any]) -> bytes:
        """A non-streamed completion; the answer's raw bytes."""
        try:
            response = await self.client.post("/chat/completions", content=orjson.dumps(body))
        except httpx.HTTPError as exc:
            raise self._failure(exc) from None
        self._check(response.status_code, response.content)
        return response.content

    @asynccontextmanager
    async def stream(self, body: Mapping[str, Any]) -> AsyncIterator[AsyncIterator[bytes]]:
        """A streamed completion: yields an iterator over the ``data:`` payloads of its
        server-sent events (``[DONE]`` included); the connection closes on exit."""
        request = self.client.build_request("POST", "/chat/completions", content=orjson.dumps(body))
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._failure(exc) from None
        try:
            if response.status_code >= 400:
                self._check(response.status_code, await response.aread())
            yield self._payloads(response)
        finally:
            await response.aclose()

    async def _payloads(self, response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    yield line[5:].strip().encode()
        except httpx.HTTPError as exc:
            raise self._failure(exc) from None

    async def models(self) -> list[str]:
        try:
            response = await self.client.get("/models")
        except httpx.HTTPError as exc:
            raise self._failure(exc) from None
        self._check(response.status_code, response.content)
        try:
            return [str(m["id"]) for m in orjson.loads(response.content)["data"]]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise UpstreamError(502, "the upstream's /v1/models is not a model list",
                                "bad_upstream_response") from None

    async def load_adapter(self, name: str, path: str) -> bool:
        """Load an adapter under ``name``; False when the upstream holds the name already."""
        try:
            response = await self.client.post("/load_lora_adapter",
                                              json={"lora_name": name, "lora_path": path})
        except httpx.HTTPError as exc:
            raise self._failure(exc) from None
        if response.status_code == 400 and "already been loaded" in _message_of(response.content):
            return False
        self._check(response.status_code, response.content)
        log.info("event=adapter_loaded_upstream name=%s", name)
        return True
