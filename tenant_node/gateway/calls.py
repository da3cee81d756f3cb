"""``POST /v1/chat/completions`` through the gateway: identify, route, forward, capture.

Per call: the user (``user`` field or ``X-Hermes-User``) and session (``X-Hermes-Session``,
else the conversation's opening turns) are identified; the plan routes the user to an arm
(sticky: the keyed hash of user and test id) and ``model`` is rewritten to the arm's
versioned name; the session's state reserves the branch the call extends (the trajectory id
every answer carries); the call goes upstream; its answer is captured (only the turns the
branch lacks) and released once durable. For ``stream: true`` the chunks are relayed as
they come and the stream's end (the chunk with ``finish_reason``, the usage chunk and
``[DONE]``) is held back until the capture is durable. Nothing is captured for a call that
fails or a stream the client leaves; an upstream failure on a known trajectory is recorded
as its ``ErrorReported``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from hermes_fed.serving.assembly import Reservation, SessionState, TurnDigester
from hermes_fed.serving.capture import CallContext, call_events, feedback_event
from hermes_fed.serving.conversion import from_openai_messages
from hermes_fed.serving.wire import (
    SSE_DONE,
    ChatRequest,
    StreamAssembler,
    WireError,
    check_answer,
    parse_chat_request,
    parse_completion,
    sse,
)
from tenant_node.config import GatewayConfig

from .capture import CaptureWriter, RedactAhead, SessionCache
from .metrics import GatewayMetrics
from .routing import Decision, PlanRouter
from .upstream import Upstream, UpstreamError

log = logging.getLogger(__name__)
TRAJECTORY_HEADER = "X-Hermes-Trajectory-Id"
_HEADER_VALUE = re.compile(r"[\x21-\x7e]{1,128}")
_TASK_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _upstream_fault(exc: WireError) -> bool:
    """The upstream failed (not the caller): an error signal for the session."""
    return exc.type == "upstream_error"


def error_response(exc: WireError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (checked before reading when the
    client declares its length)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise WireError(413, f"the request body exceeds {limit} bytes", code="request_too_large")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise WireError(413, f"the request body exceeds {limit} bytes",
                            code="request_too_large")
        parts.append(part)
    return b"".join(parts)


@dataclass(slots=True)
class Call:
    """One chat call, identified and routed."""

    request: ChatRequest
    decision: Decision
    context: CallContext
    chains: list[int]
    tools_key: int
    retry_window_s: float
    started: float
    ahead: Future[None] | None = None  # its new messages' detection, under way

    def upstream_body(self) -> dict[str, Any]:
        body = dict(self.request.body, model=self.decision.upstream_model)
        if self.request.stream:
            # Usage is asked for always (metrics); the client gets it only if it asked.
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return body


class ChatCalls:
    """The chat-completions flow of the gateway."""

    def __init__(self, config: GatewayConfig, router: PlanRouter, upstream: Upstream,
                 writer: CaptureWriter, sessions: SessionCache, digester: TurnDigester,
                 metrics: GatewayMetrics, ahead: RedactAhead | None = None) -> None:
        self.config = config
        self.router = router
        self.upstream = upstream
        self.writer = writer
        self.sessions = sessions
        self.digester = digester
        self.metrics = metrics
        self.ahead = ahead
        self.answering = 0  # calls between going upstream and being captured (or failing)

    # --- identify and route -------------------------------------------------------------
    def prepare(self, request: Request, parsed: ChatRequest) -> Call:
        if not self.router.accepts(parsed.model):
            raise WireError(404, f"The model `{parsed.model}` does not exist.", param="model",
                            code="model_not_found")
        headers = request.headers
        user = parsed.user or headers.get("x-hermes-user") or None
        if user is not None and len(user) > 256:
            raise WireError(400, "X-Hermes-User: at most 256 characters", code="invalid_value")
        session = headers.get("x-hermes-session")
        if session is not None and not _HEADER_VALUE.fullmatch(session):
            raise WireError(400, "X-Hermes-Session: 1..128 printable ASCII characters",
                            code="invalid_value")
        task_type = headers.get("x-hermes-task-type", self.config.default_task_type)
        if not _TASK_TYPE.fullmatch(task_type):
            raise WireError(400, "X-Hermes-Task-Type: 1..64 of [A-Za-z0-9_.:-]",
                            code="invalid_value")
        decision = self.router.route(user)
        turns = parsed.messages
        chains = self.digester.chain(turns)
        opening = next((i for i, t in enumerate(turns) if t["role"] == "user"), len(turns) - 1)
        anchor = f"h:{session}" if session else f"c:{chains[opening]}"
        sid = self.digester.session_id("session", decision.test_id or "", user or "", anchor)
        context = CallContext(
            stream_id=f"session-{sid}", user_ref=user or f"anon-{sid[:16]}",
            model_version=decision.version, variant=decision.arm,
            ab_test_id=decision.test_id, task_type=task_type)
        # Without a user or a session header, unrelated people who open alike share a
        # session: their re-sent messages are not retries of each other's answers.
        window = self.config.retry_window_s if (user or session) else -1.0
        self.metrics.arm_requests.labels(decision.test_id or "none", decision.arm or "base",
                                         decision.version).inc()
        if not user:
            self.metrics.no_user.inc()
        return Call(parsed, decision, context, chains, self.digester.tools_key(parsed.tools),
                    window, time.perf_counter())

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            parsed = parse_chat_request(await read_body(request, self.config.max_body_bytes))
            call = self.prepare(request, parsed)
            # Nothing else in flight: a local log's read runs right here (as a lone
            # call's append does).
            state = await self.sessions.get(call.context.stream_id,
                                            inline=self.writer.inline and not self.answering)
            self.metrics.sessions.set(len(self.sessions))
        except WireError as exc:
            return self._answered(error_response(exc), started, False)
        last_role = parsed.messages[-1]["role"]
        reservation = state.reserve(call.chains, last_role, time.time(), call.retry_window_s)
        # With other calls in flight and a capture process running, this capture will
        # likely go to that process: detecting ahead here would only cost this one's GIL.
        if self.ahead is not None and not (self.answering and self.writer.process_ready):
            call.ahead = self.ahead.submit(parsed.messages[reservation.base:],
                                           parsed.tools if reservation.new else None)
        if parsed.stream:
            return await self._open_stream(call, state, reservation)
        return self._answered(await self._complete(call, state, reservation), started, False)

    def _answered(self, response: Response, started: float, stream: bool) -> Response:
        self.metrics.requests.labels("chat", str(response.status_code)).inc()
        if not stream:
            self.metrics.latency.labels("chat", "false").observe(time.perf_counter() - started)
        return response

    # --- upstream -----------------------------------------------------------------------
    async def _forward(self, call: Call) -> bytes:
        try:
            return await self.upstream.chat(call.upstream_body())
        except WireError as exc:
            if exc.code != "model_not_found" or call.decision.version == self.router.base_model:
                raise
            await self.router.reload(call.decision.version)  # the upstream restarted
            return await self.upstream.chat(call.upstream_body())

    async def _upstream_failed(self, call: Call, reservation: Reservation, exc: WireError) -> None:
        kind = exc.code or "upstream_error"
        self.metrics.upstream_errors.labels(kind).inc()
        if reservation.new:
            return  # no trajectory yet to attach the error to
        try:
            await self.writer.append([feedback_event(
                call.context.stream_id, reservation.trajectory_id, "error",
                reason=f"upstream: {kind}")])
        except Exception as append_error:
            log.warning("event=error_signal_not_recorded error=%s", type(append_error).__name__)

    async def _complete(self, call: Call, state: SessionState,
                        reservation: Reservation) -> Response:
        self.answering += 1
        try:
            return await self._complete_counted(call, state, reservation)
        finally:
            self.answering -= 1

    async def _complete_counted(self, call: Call, state: SessionState,
                                reservation: Reservation) -> Response:
        try:
            completion = parse_completion(await self._forward(call))
        except WireError as exc:
            state.release(reservation)
            if _upstream_fault(exc):
                await self._upstream_failed(call, reservation, exc)
            return error_response(exc)
        try:
            await self._capture(call, state, reservation, completion.message)
        except WireError as exc:
            return error_response(exc)
        body = dict(completion.raw, model=call.request.model)
        return Response(orjson.dumps(body), media_type="application/json",
                        headers={TRAJECTORY_HEADER: reservation.trajectory_id})

    # --- capture ------------------------------------------------------------------------
    async def _capture(self, call: Call, state: SessionState, reservation: Reservation,
                       answer: dict[str, Any]) -> None:
        """Append the call's events durably and commit the session's state; raises a 503
        ``capture_failed`` (the answer is not released) when the store refuses them."""
        answered = time.perf_counter()
        turn = from_openai_messages([{**answer, "role": "assistant"}], "answer")[0]
        chains = [*call.chains, *self.digester.chain([turn], call.chains[-1] if call.chains else 0)]
        events = call_events(call.context, reservation, call.request.messages, turn,
                             call.request.tools, chains, call.tools_key,
                             state.branch_tools_key(reservation.trajectory_id))

        alone = self.answering <= 1  # no other call could share this one's commit
        if not alone and self.writer.process_ready:
            if call.ahead is not None:
                call.ahead.cancel()  # the capture process detects them itself
        else:
            # The capture redacts the call's new messages too: never while the worker
            # still detects them (the same text twice, under one GIL). Waited for on this
            # thread only when the capture will hold it anyway (an inline commit).
            await RedactAhead.settle(call.ahead, alone and self.writer.inline)

        async def durable() -> None:
            try:
                await self.writer.append(events, alone)
            except BaseException:
                state.release(reservation)
                raise
            state.commit(reservation, chains, call.tools_key, time.time())
            if reservation.retry_of is not None:
                self.metrics.retries.inc()

        # Shielded: a client that leaves now does not undo a capture that is under way.
        task = asyncio.ensure_future(durable())
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.metrics.capture_failures.inc()
            raise WireError(503, "the call was answered but could not be recorded; retry it",
                            type="server_error", code="capture_failed") from exc
        self.metrics.capture_lag.observe(time.perf_counter() - answered)

    # --- streaming ----------------------------------------------------------------------
    async def _open_stream(self, call: Call, state: SessionState,
                           reservation: Reservation) -> Response:
        stack = AsyncExitStack()
        try:
            try:
                payloads = await stack.enter_async_context(self.upstream.stream(call.upstream_body()))
            except WireError as exc:
                if exc.code != "model_not_found" or call.decision.version == self.router.base_model:
                    raise
                await self.router.reload(call.decision.version)
                payloads = await stack.enter_async_context(self.upstream.stream(call.upstream_body()))
        except WireError as exc:
            await stack.aclose()
            state.release(reservation)
            if _upstream_fault(exc):
                await self._upstream_failed(call, reservation, exc)
            return self._answered(error_response(exc), call.started, False)
        return StreamingResponse(self._relay(call, state, reservation, payloads, stack),
                                 media_type="text/event-stream",
                                 headers={TRAJECTORY_HEADER: reservation.trajectory_id,
                                          "Cache-Control": "no-cache"})

    async def _relay(self, call: Call, state: SessionState, reservation: Reservation,
                     payloads: AsyncIterator[bytes], stack: AsyncExitStack) -> AsyncIterator[bytes]:
        assembler = StreamAssembler()
        held: list[bytes] = []
        capturing = finished = False
        status = "200"
        self.answering += 1
        try:
            done = False
            async for payload in payloads:
                if payload == b"[DONE]":
                    done = True
                    break
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    raise UpstreamError(502, "the upstream streamed something that is not JSON",
                                        "bad_upstream_response") from None
                if isinstance(chunk, dict) and "error" in chunk:
                    raise UpstreamError(502, "the upstream failed mid-stream", "upstream_error")
                assembler.add(chunk)
                if chunk.get("usage") is not None and not chunk.get("choices") \
                        and not call.request.include_usage:
                    continue  # asked for the metrics' sake only
                chunk["model"] = call.request.model
                out = sse(chunk)
                if held or any(c.get("finish_reason") for c in chunk.get("choices") or ()):
                    held.append(out)  # the end waits for the capture
                else:
                    yield out
            if not done:
                raise UpstreamError(502, "the upstream's stream ended without [DONE]",
                                    "bad_upstream_response")
            answer = assembler.message()
            check_answer(answer)
            capturing = True
            await self._capture(call, state, reservation, answer)
            for out in held:
                yield out
            yield SSE_DONE
            finished = True
        except WireError as exc:
            status = str(exc.status)
            if not capturing:
                state.release(reservation)
                if _upstream_fault(exc):
                    await self._upstream_failed(call, reservation, exc)
            yield sse(exc.body())  # the OpenAI client raises on an error event
            yield SSE_DONE
        finally:
            self.answering -= 1
            if not finished and not capturing and status == "200":
                state.release(reservation)  # the client left mid-stream: nothing captured
                self.metrics.disconnects.inc()
                status = "499"
            with anyio.CancelScope(shield=True):  # a cancelled stream still closes upstream
                await stack.aclose()
            self.metrics.requests.labels("chat", status).inc()
            self.metrics.latency.labels("chat", "true").observe(time.perf_counter() - call.started)
