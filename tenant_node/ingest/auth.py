"""The per-tenant bearer token, checked on every call by a server interceptor.

``authorization: Bearer <token>`` metadata is compared in constant time. The standard
health service is exempt: it answers only SERVING / NOT_SERVING, and load balancers and
orchestrators probe it without credentials.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

import grpc

log = logging.getLogger(__name__)

EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


def _aborting_handler(
    handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as ``handler`` that aborts with ``code``."""

    def abort(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


class BearerTokenInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Refuse calls without the tenant's token: ``UNAUTHENTICATED`` naming the header."""

    def __init__(self, token: str, on_reject: Callable[[str], None] | None = None) -> None:
        if not token:
            raise ValueError("token must not be empty")
        self._expected = f"Bearer {token}".encode()
        self._on_reject = on_reject or (lambda _method: None)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method.startswith(EXEMPT_PREFIXES):
            return continuation(handler_call_details)
        supplied = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                supplied = value.encode() if isinstance(value, str) else bytes(value)
                break
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        if supplied is None:
            problem = "authorization: missing bearer token"
        elif not hmac.compare_digest(supplied, self._expected):
            problem = "authorization: wrong bearer token"
        else:
            return handler
        log.warning("event=call_refused method=%s reason=%s", method, problem.split(": ")[1])
        self._on_reject(method)
        return _aborting_handler(handler, grpc.StatusCode.UNAUTHENTICATED, problem)
