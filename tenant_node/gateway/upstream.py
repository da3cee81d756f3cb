"""The gateway's upstream: any OpenAI-compatible server (``hermes-fed model serve``, vLLM).

Calls go over one aiohttp client session (a keep-alive connection pool with a C HTTP
parser): against the instant local upstream it spends less than half the CPU a call that
httpcore did (``bench/gateway/bench_upstream_client.py``), which was most of what the
gateway's own HTTP hop cost. Failures
become OpenAI-style errors for the agent: a timeout is 504 ``upstream_timeout``, a refused
connection 502 ``upstream_unavailable``, a 5xx or an answer that is not the API's shape 502
``upstream_error`` / ``bad_upstream_response``; a 4xx is the caller's own mistake and is
passed through with the upstream's status and message.

Adapters are loaded by versioned name with vLLM's runtime endpoint (``POST
/v1/load_lora_adapter``, which ``model serve`` implements too) before anyone is routed to
them; a name the upstream holds already is left alone, never reloaded in place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from hermes_fed.serving.wire import WireError

log = logging.getLogger(__name__)

#: What a broken upstream connection raises (a timeout is told apart first).
_NETWORK_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


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
    """An OpenAI-compatible server at ``base_url`` (``/v1`` is appended). Its connection
    pool opens on the first call (inside the event loop that uses it)."""

    def __init__(self, base_url: str, timeout_s: float, api_key: str = "") -> None:
        self.base_url = base_url.rstrip("/") + "/v1"
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        # connect: opening a connection; sock_read: waiting for any byte (between streamed
        # chunks too), as the timeout is documented
        self._timeout = aiohttp.ClientTimeout(total=None, connect=min(timeout_s, 10.0),
                                              sock_connect=min(timeout_s, 10.0),
                                              sock_read=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=0,
                                               keepalive_timeout=30.0),
                timeout=self._timeout, headers=self._headers, auto_decompress=True,
                skip_auto_headers=("User-Agent",))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @staticmethod
    def _failure(exc: BaseException) -> UpstreamError:
        if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            return UpstreamError(504, "the upstream did not answer in time", "upstream_timeout")
        if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError):
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
            async with self._client().request(method, self.base_url + path,
                                              data=body) as response:
                return response.status, await response.read()
        except _NETWORK_ERRORS as exc:
            raise self._failure(exc) from None

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
            response = await self._client().post(self.base_url + "/chat/completions",
                                                 data=orjson.dumps(body))
        except _NETWORK_ERRORS as exc:
            raise self._failure(exc) from None
        try:
            if response.status >= 400:
                try:
                    content = await response.read()
                except _NETWORK_ERRORS as exc:
                    raise self._failure(exc) from None
                self._check(response.status, content)
            yield self._payloads(response)
        finally:
            response.release()

    async def _payloads(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        buffer = b""
        try:
            async for piece in response.content.iter_any():
                buffer += piece
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.startswith(b"data:"):
                        yield line[5:].strip()
        except _NETWORK_ERRORS as exc:
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
