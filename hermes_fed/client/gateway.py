"""Feedback to a node's gateway: the signal for an answer the gateway served.

>>> with GatewayFeedback("http://127.0.0.1:8088", token) as feedback:  # doctest: +SKIP
...     feedback.accepted(trajectory_id)      # X-Hermes-Trajectory-Id of the answer
...     feedback.edited(trajectory_id, 0.3)  # the user kept 70% of it

Signals are those of ``POST /v1/feedback``: ``accepted``, ``retried``, ``edited`` (with
``edit_ratio`` in [0, 1]), ``continued``, ``error`` (with an optional ``reason``). Bad values
are refused here, before any request, with the same message the gateway would give.
"""

from __future__ import annotations

from typing import Any

import httpx

from hermes_fed.errors import HermesFedError
from hermes_fed.serving.capture import feedback_event


class GatewayFeedbackError(HermesFedError):
    """The gateway refused the feedback; ``status`` and ``code`` are its answer's."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class GatewayFeedback:
    """A small client of ``POST /v1/feedback``."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 10.0,
                 verify: Any = True) -> None:
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s,
                                    verify=verify,
                                    headers={"Authorization": f"Bearer {token}"})

    def send(self, trajectory_id: str, signal: str, *, edit_ratio: float | None = None,
             reason: str | None = None) -> dict[str, Any]:
        """Record one signal; returns the gateway's answer (``event_type`` and so on)."""
        feedback_event("session-check", trajectory_id, signal, edit_ratio=edit_ratio,
                       reason=reason)  # refuses bad values (FormatError) before sending
        body: dict[str, Any] = {"trajectory_id": trajectory_id, "signal": signal}
        if edit_ratio is not None:
            body["edit_ratio"] = edit_ratio
        if reason is not None:
            body["reason"] = reason
        response = self._client.post("/v1/feedback", json=body)
        if response.status_code != 200:
            try:
                error = response.json()["error"]
                raise GatewayFeedbackError(response.status_code, error.get("code"),
                                           str(error.get("message")))
            except (ValueError, KeyError, TypeError):
                raise GatewayFeedbackError(response.status_code, None, response.text[:200]) \
                    from None
        answer: dict[str, Any] = response.json()
        return answer

    def accepted(self, trajectory_id: str) -> dict[str, Any]:
        return self.send(trajectory_id, "accepted")

    def retried(self, trajectory_id: str) -> dict[str, Any]:
        return self.send(trajectory_id, "retried")

    def edited(self, trajectory_id: str, edit_ratio: float) -> dict[str, Any]:
        return self.send(trajectory_id, "edited", edit_ratio=edit_ratio)

    def continued(self, trajectory_id: str) -> dict[str, Any]:
        return self.send(trajectory_id, "continued")

    def error(self, trajectory_id: str, reason: str | None = None) -> dict[str, Any]:
        return self.send(trajectory_id, "error", reason=reason)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GatewayFeedback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
