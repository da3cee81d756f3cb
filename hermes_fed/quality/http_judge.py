"""A judge behind an OpenAI-compatible ``/chat/completions`` endpoint (stdlib ``urllib``).

The endpoint is asked for ``{"score": <0..1>, "rationale": "..."}``; replies are parsed
leniently (a JSON object, possibly in a code fence; ``score: 0.8``; ``8/10``). Errors say
which URL failed and how (timeout, HTTP status, connection, unparseable reply) and raise
:class:`~hermes_fed.errors.JudgeError`.

Only loopback hosts are allowed unless ``allow_remote``: the trajectory is sent in the
request, and nothing raw may leave the node (invariant 8). The model's own rationale is
kept on the verdict's check but not copied into the event (it may quote the trajectory).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from hermes_fed.errors import JudgeError
from hermes_fed.events.session import TrajectoryRecorded

from .config import HttpJudgeConfig
from .judges import CheckResult, Judge, JudgeVerdict

SYSTEM_PROMPT = (
    "You grade an AI agent's trajectory (messages, tool calls, tool results, final answer). "
    "Judge whether the final answer correctly and helpfully completes the user's task, using "
    "the tools properly. Reply with only a JSON object: "
    '{"score": <number from 0 (useless) to 1 (perfect)>, "rationale": "<one sentence>"}.'
)

_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)
_SCORE_FIELD = re.compile(r"\bscore\b\W{0,3}([-+]?\d+(?:\.\d+)?)", re.IGNORECASE)
_FRACTION = re.compile(r"([-+]?\d+(?:\.\d+)?)\s*/\s*(10|5|100)\b")


def parse_score(reply: str) -> tuple[float, str, str]:
    """``(score in [0, 1], rationale, how)`` from a judge's reply text; ``JudgeError`` if none."""
    candidates = [m.group(1) for m in _FENCE.finditer(reply)]
    stripped = reply.strip()
    if stripped.startswith("{"):
        candidates.insert(0, stripped)
    for text in candidates:
        try:
            obj = json.loads(text)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("score"), int | float) \
                and not isinstance(obj.get("score"), bool):
            rationale = obj.get("rationale")
            return (_in_unit(float(obj["score"]), reply), str(rationale or ""), "json")
    fraction = _FRACTION.search(reply)
    if fraction:
        value = float(fraction.group(1)) / float(fraction.group(2))
        return _in_unit(value, reply), "", f"fraction /{fraction.group(2)}"
    field_match = _SCORE_FIELD.search(reply)
    if field_match:
        return _in_unit(float(field_match.group(1)), reply), "", "score field"
    raise JudgeError(f"judge reply holds no score ({len(reply)} characters; expected a JSON "
                     'object with "score")')


def _in_unit(value: float, reply: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise JudgeError(f"judge score {value!r} is outside [0, 1]")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def render_trajectory(trajectory: TrajectoryRecorded) -> str:
    body = {"task": trajectory.task, "tools": trajectory.tools,
            "messages": trajectory.messages, "final_response": trajectory.final_response}
    return json.dumps(body, ensure_ascii=False, sort_keys=True)


class OpenAICompatibleJudge(Judge):
    """POSTs the trajectory to ``{url}/chat/completions`` and parses a score in [0, 1]."""

    def __init__(self, config: HttpJudgeConfig) -> None:
        if not config.url:
            raise JudgeError("the HTTP judge needs [quality.judge_http] url")
        parsed = urllib.parse.urlsplit(config.url)
        host = parsed.hostname or ""
        if not config.allow_remote and not _is_loopback(host):
            raise JudgeError(
                f"judge host {host!r} is not loopback; trajectories would leave the node. "
                "Set [quality.judge_http] allow_remote = true to allow it"
            )
        self.config = config
        self.name = config.name
        self.endpoint = config.url.rstrip("/") + "/chat/completions"

    def request_body(self, trajectory: TrajectoryRecorded) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": render_trajectory(trajectory)},
            ],
        }

    def complete(self, body: dict[str, Any]) -> str:
        """One chat/completions call; returns ``choices[0].message.content``."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key_env:
            token = os.environ.get(self.config.api_key_env)
            if not token:
                raise JudgeError(f"environment variable {self.config.api_key_env} (the judge's "
                                 "API key) is not set")
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.endpoint, data=json.dumps(body).encode("utf-8"),
                                         headers=headers, method="POST")
        where = f"judge endpoint {self.endpoint}"
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode("utf-8", "replace")
            raise JudgeError(f"{where} answered HTTP {exc.code}: {detail}") from None
        except TimeoutError:
            raise JudgeError(f"{where} timed out after {self.config.timeout_s:g}s") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise JudgeError(f"{where} timed out after {self.config.timeout_s:g}s") from None
            raise JudgeError(f"{where} unreachable: {exc.reason}") from None
        try:
            payload = json.loads(raw)
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(f"{where} sent no choices[0].message.content "
                             f"({len(raw)} bytes)") from None
        if not isinstance(content, str):
            raise JudgeError(f"{where}: message content is {type(content).__name__}, not text")
        return content

    def judge(self, trajectory: TrajectoryRecorded) -> JudgeVerdict:
        reply = self.complete(self.request_body(trajectory))
        score, model_rationale, how = parse_score(reply)
        host = urllib.parse.urlsplit(self.endpoint).netloc
        rationale = f"model {self.config.model} at {host}, score parsed from {how}"
        return JudgeVerdict(self.name, trajectory.trajectory_id, score, rationale,
                            (CheckResult("model_rationale", None, model_rationale),))
