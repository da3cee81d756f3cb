"""Cold start: a handful of golden trajectories per task type before any usage exists.

Two sources, same output shape (CONTRIBUTING.md trajectories):

- offline templates (the default): each family's golden reply (tool call, real tool result,
  templated answer) on seeded task instances;
- an OpenAI-compatible teacher endpoint, when configured (``POST {base_url}/chat/completions``
  with ``tools``; stdlib ``urllib`` only). The teacher's tool call is executed by the real
  tool, the result sent back, and its final answer kept only when the family's verifier
  accepts it; a rejected or failed teacher answer falls back to the template and is counted.
"""

from __future__ import annotations

import json
import logging
import os
import random
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from examples.flywheel.tasks import (
    SYSTEM_PROMPT,
    TaskInstance,
    family,
    golden_trajectory,
    trajectory_id_for,
)
from hermes_fed.errors import TeacherError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TeacherConfig:
    """An OpenAI-compatible chat-completions endpoint used as a cold-start teacher."""

    base_url: str = field(metadata={
        "help": "Base URL, e.g. http://127.0.0.1:8000/v1 (the path /chat/completions is "
                "appended)."})
    model: str = field(default="teacher", metadata={"help": "Model name sent in requests."})
    api_key_env: str = field(default="", metadata={
        "help": "Environment variable holding a bearer token; empty: no Authorization."})
    timeout_s: float = field(default=30.0, metadata={"help": "Per-request timeout, seconds."})
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature sent."})

    def __post_init__(self) -> None:
        parsed = urlparse(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"TeacherConfig.base_url must be an http(s) URL, got "
                             f"{self.base_url!r}")
        if not (isinstance(self.timeout_s, int | float) and self.timeout_s > 0):
            raise ValueError(f"TeacherConfig.timeout_s must be > 0, got {self.timeout_s!r}")
        if not self.model:
            raise ValueError("TeacherConfig.model must not be empty, got ''")


@dataclass(frozen=True, slots=True)
class ColdStartReport:
    """Where the cold-start trajectories came from."""

    trajectories: tuple[dict[str, Any], ...]
    from_teacher: int
    from_template: int
    teacher_rejected: int
    teacher_failed: int


class OpenAITeacher:
    """Drives the agent loop with a remote teacher model instead of the local one."""

    def __init__(self, config: TeacherConfig) -> None:
        self.config = config

    def _chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
              ) -> dict[str, Any]:
        body = json.dumps({"model": self.config.model, "messages": messages,
                           "temperature": self.config.temperature,
                           "tools": [{"type": "function", "function": t} for t in tools]})
        headers = {"Content-Type": "application/json"}
        if self.config.api_key_env:
            token = os.environ.get(self.config.api_key_env, "")
            if not token:
                raise TeacherError(f"teacher: environment variable "
                                   f"{self.config.api_key_env} is empty")
            headers["Authorization"] = f"Bearer {token}"
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        request = urllib.request.Request(url, data=body.encode(), headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                reply = json.loads(response.read())
            message = reply["choices"][0]["message"]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError,
                TypeError) as exc:
            raise TeacherError(f"teacher at {url}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(message, dict):
            raise TeacherError(f"teacher at {url}: choices[0].message is not an object")
        return message

    def trajectory(self, instance: TaskInstance, trajectory_id: str) -> dict[str, Any]:
        """Ask the teacher to solve ``instance`` with its tool; ``TeacherError`` on failure."""
        fam = family(instance.task_type)
        tools = [fam.tool_schema]
        wire: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT},
                                      {"role": "user", "content": instance.request}]
        first = self._chat(wire, tools)
        calls = first.get("tool_calls") or []
        if not calls:
            raise TeacherError("teacher answered without a tool call")
        try:
            fn = calls[0]["function"]
            name, arguments = str(fn["name"]), json.loads(fn["arguments"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TeacherError(f"teacher tool call is malformed: {type(exc).__name__}") from exc
        result = fam.run(arguments) if name == fam.tool_name else json.dumps(
            {"error": f"unknown tool {name[:40]!r}"})
        call_id = str(calls[0].get("id") or "call_1")
        wire += [{"role": "assistant", "content": "", "tool_calls": [
                     {"id": call_id, "type": "function",
                      "function": {"name": name, "arguments": json.dumps(arguments)}}]},
                 {"role": "tool", "tool_call_id": call_id, "content": result}]
        final = str(self._chat(wire, tools).get("content") or "").strip()
        return {
            "trajectory_id": trajectory_id,
            "task": instance.request,
            "task_type": instance.task_type,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": instance.request},
                {"role": "assistant", "content": "",
                 "tool_calls": [{"id": "call_1", "name": name, "arguments": arguments}]},
                {"role": "tool", "tool_call_id": "call_1", "name": name, "content": result},
                {"role": "assistant", "content": final},
            ],
            "tools": tools,
            "final_response": final,
        }


def cold_start_report(task_types: Sequence[str], n_per_type: int, seed: int, *,
                      table: str = "demo_table",
                      teacher: TeacherConfig | None = None) -> ColdStartReport:
    """Golden trajectories, ``n_per_type`` per task type, with the count per source."""
    if not isinstance(n_per_type, int) or n_per_type < 0:
        raise ValueError(f"n_per_type must be an integer >= 0, got {n_per_type!r}")
    remote = OpenAITeacher(teacher) if teacher is not None else None
    out: list[dict[str, Any]] = []
    counts = {"teacher": 0, "template": 0, "rejected": 0, "failed": 0}
    for task_type in task_types:
        fam = family(task_type)
        rng = random.Random(f"coldstart/{task_type}/{table}/{seed}")
        for i in range(n_per_type):
            instance = fam.generate(rng, table)
            tid = trajectory_id_for(f"golden/{task_type}/{table}/{seed}", i)
            if remote is not None:
                try:
                    candidate = remote.trajectory(instance, tid)
                except TeacherError as exc:
                    log.warning("cold_start teacher_failed task_type=%s error=%s", task_type,
                                exc)
                    counts["failed"] += 1
                else:
                    if fam.verify(instance.request, candidate["final_response"]):
                        out.append(candidate)
                        counts["teacher"] += 1
                        continue
                    counts["rejected"] += 1
            out.append(golden_trajectory(instance, tid))
            counts["template"] += 1
    return ColdStartReport(tuple(out), counts["teacher"], counts["template"],
                           counts["rejected"], counts["failed"])


def cold_start_trajectories(task_types: Sequence[str], n_per_type: int, seed: int, *,
                            table: str = "demo_table",
                            teacher: TeacherConfig | None = None) -> list[dict[str, Any]]:
    """Golden trajectories for the cold start (offline templates unless ``teacher`` is set)."""
    return list(cold_start_report(task_types, n_per_type, seed, table=table,
                                  teacher=teacher).trajectories)
