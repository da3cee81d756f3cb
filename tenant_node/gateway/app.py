"""The gateway's HTTP surface (Starlette): chat, models, feedback, health, metrics.

``/v1/*`` needs ``Authorization: Bearer <token>`` (the agent's OpenAI ``api_key``), compared
in constant time; ``/health`` and ``/metrics`` carry no data and need none, as the ingest
service's health and metrics do. Every error is OpenAI's ``{"error": {"message", "type",
"param", "code"}}``.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hermes_fed.errors import FormatError
from hermes_fed.serving.capture import feedback_event
from hermes_fed.serving.wire import WireError

from .calls import ChatCalls, error_response, read_body
from .metrics import GatewayMetrics

_TRAJECTORY_ID = re.compile(r"t-([0-9a-f]{32})-[0-9a-f]{12}")
FEEDBACK_MAX_BYTES = 64 * 1024
Handler = Callable[[Request], Awaitable[Response]]


class GatewayApp:
    """Routes and auth around :class:`ChatCalls`."""

    def __init__(self, metrics: GatewayMetrics, token: str,
                 health: Callable[[], Mapping[str, Any]], lifespan: Any = None) -> None:
        self.calls: ChatCalls | None = None  # set once the lifespan has opened the store
        self.metrics = metrics
        self._expected = f"Bearer {token}".encode()
        self._health = health
        self.app = Starlette(routes=[
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/v1/models", self._authed(self.models), methods=["GET"]),
            Route("/v1/chat/completions", self._authed(self.chat), methods=["POST"]),
            Route("/v1/feedback", self._authed(self.feedback), methods=["POST"]),
        ], lifespan=lifespan)

    def _authed(self, handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            if self.calls is None:
                return error_response(WireError(503, "the gateway is starting",
                                                type="server_error", code="starting"))
            supplied = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(supplied, self._expected):
                reason = "missing" if not supplied else "wrong"
                self.metrics.requests.labels(request.url.path, "401").inc()
                return error_response(WireError(
                    401, f"authorization: {reason} bearer token", type="authentication_error",
                    code="invalid_api_key"))
            return await handler(request)

        return wrapped

    async def chat(self, request: Request) -> Response:
        assert self.calls is not None
        return await self.calls.handle(request)

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok", **self._health()})

    async def prometheus(self, _request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def models(self, _request: Request) -> Response:
        assert self.calls is not None
        now = int(time.time())
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": now, "owned_by": "hermes-fed"}
            for name in self.calls.router.served_names()]})

    async def feedback(self, request: Request) -> Response:
        """``{trajectory_id, signal, edit_ratio?, reason?}`` -> the matching session event."""
        try:
            body = orjson.loads(await read_body(request, FEEDBACK_MAX_BYTES))
        except WireError as exc:
            return self._done(error_response(exc))
        except orjson.JSONDecodeError:
            return self._done(error_response(WireError(400, "the request body is not valid JSON",
                                                       code="invalid_json")))
        if not isinstance(body, dict):
            return self._done(error_response(WireError(400, "the body must be a JSON object",
                                                       code="invalid_body")))
        unknown = set(body) - {"trajectory_id", "signal", "edit_ratio", "reason"}
        tid = body.get("trajectory_id")
        match = _TRAJECTORY_ID.fullmatch(tid) if isinstance(tid, str) else None
        if unknown:
            problem = WireError(400, f"unknown fields {sorted(unknown)!r}", code="invalid_body")
        elif match is None:
            problem = WireError(400, "trajectory_id: expected the X-Hermes-Trajectory-Id of an "
                                     "answer", param="trajectory_id", code="invalid_value")
        else:
            problem = None
        if problem is not None:
            return self._done(error_response(problem))
        assert isinstance(tid, str) and match is not None
        stream_id = f"session-{match.group(1)}"
        try:
            event = feedback_event(stream_id, tid, str(body.get("signal")),
                                   edit_ratio=body.get("edit_ratio"), reason=body.get("reason"),
                                   actor="gateway.feedback")
        except FormatError as exc:
            param = str(exc).split(":", 1)[0]
            return self._done(error_response(WireError(400, str(exc), param=param,
                                                       code="invalid_value")))
        assert self.calls is not None
        state = await self.calls.sessions.get(stream_id)
        if not state.holds(tid) and tid not in state.in_flight:
            return self._done(error_response(WireError(
                404, f"no trajectory {tid} in this node's log", type="not_found_error",
                param="trajectory_id", code="trajectory_not_found")))
        await self.calls.writer.append([event])
        self.metrics.feedback.labels(str(body["signal"])).inc()
        return self._done(JSONResponse({"trajectory_id": tid, "signal": body["signal"],
                                        "event_type": event.type, "recorded": True}))

    def _done(self, response: Response) -> Response:
        self.metrics.requests.labels("feedback", str(response.status_code)).inc()
        return response
