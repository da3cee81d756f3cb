"""Cold start: offline golden templates, and the teacher adapter against a local server."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from examples.flywheel.coldstart import (
    OpenAITeacher,
    TeacherConfig,
    cold_start_report,
    cold_start_trajectories,
)
from examples.flywheel.tasks import FAMILIES, family
from hermes_fed.errors import TeacherError
from hermes_fed.training.verifiers import VERIFIERS


class _Teacher(BaseHTTPRequestHandler):
    """Speaks /v1/chat/completions: a calculator call, then an answer from the tool result.

    ``server.mode``: ``good`` answers right, ``wrong`` adds 1, ``no_call`` never calls a
    tool, ``broken`` sends invalid JSON arguments.
    """

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server: Any = self.server
        server.requests.append({"path": self.path, "body": body,
                                "auth": self.headers.get("Authorization")})
        messages = body["messages"]
        if messages[-1]["role"] == "user":
            expression = re.search(r"What is (.+?)\?", messages[-1]["content"])
            if server.mode == "no_call" or expression is None:
                message: dict[str, Any] = {"role": "assistant", "content": "No idea."}
            else:
                arguments = ("{not json" if server.mode == "broken"
                             else json.dumps({"expression": expression.group(1)}))
                message = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_9", "type": "function",
                     "function": {"name": "calculator", "arguments": arguments}}]}
        else:
            result = json.loads(messages[-1]["content"])["result"]
            if server.mode == "wrong":
                result += 1
            message = {"role": "assistant", "content": f"It is {result}."}
        reply = json.dumps({"id": "x", "object": "chat.completion",
                            "choices": [{"index": 0, "message": message,
                                         "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def teacher_server() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Teacher)
    server.requests, server.mode = [], "good"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _config(server: Any, **kw: Any) -> TeacherConfig:
    return TeacherConfig(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", **kw)


@pytest.mark.parametrize("task_type", sorted(FAMILIES))
def test_offline_golden_trajectories_pass_their_own_verifiers(task_type: str) -> None:
    # Execute
    golden = cold_start_trajectories([task_type], 12, seed=3, table="acme_parts")
    # Assert
    assert len(golden) == 12
    assert len({g["trajectory_id"] for g in golden}) == 12
    fam = family(task_type)
    for g in golden:
        assert fam.verify(g["task"], g["final_response"])
        assert VERIFIERS.get(task_type).verify(g, g["final_response"])  # type: ignore[union-attr]
        assert [m["role"] for m in g["messages"]] == ["system", "user", "assistant", "tool",
                                                      "assistant"]


def test_cold_start_is_seeded() -> None:
    a = cold_start_trajectories(sorted(FAMILIES), 3, seed=1)
    b = cold_start_trajectories(sorted(FAMILIES), 3, seed=1)
    c = cold_start_trajectories(sorted(FAMILIES), 3, seed=2)
    assert a == b
    assert a != c


def test_teacher_trajectories_are_executed_and_verified(teacher_server: Any) -> None:
    # Prepare
    config = _config(teacher_server, model="teacher-7b")
    # Execute
    report = cold_start_report(["arithmetic"], 4, seed=0, teacher=config)
    # Assert
    assert (report.from_teacher, report.from_template, report.teacher_rejected) == (4, 0, 0)
    first = teacher_server.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["body"]["model"] == "teacher-7b"
    assert first["body"]["tools"][0]["function"]["name"] == "calculator"
    assert first["auth"] is None
    second = teacher_server.requests[1]["body"]["messages"]
    assert second[-1]["role"] == "tool" and "result" in json.loads(second[-1]["content"])
    for t in report.trajectories:
        assert t["final_response"].startswith("It is ")
        assert family("arithmetic").verify(t["task"], t["final_response"])
        assert t["messages"][2]["tool_calls"][0]["name"] == "calculator"


@pytest.mark.parametrize(("mode", "rejected", "failed"), [
    ("wrong", 3, 0), ("no_call", 0, 3), ("broken", 0, 3)])
def test_bad_teacher_answers_fall_back_to_templates(teacher_server: Any, mode: str,
                                                    rejected: int, failed: int) -> None:
    # Prepare
    teacher_server.mode = mode
    # Execute
    report = cold_start_report(["arithmetic"], 3, seed=0, teacher=_config(teacher_server))
    # Assert
    assert (report.from_teacher, report.from_template) == (0, 3)
    assert (report.teacher_rejected, report.teacher_failed) == (rejected, failed)
    assert all(family("arithmetic").verify(t["task"], t["final_response"])
               for t in report.trajectories)


def test_teacher_sends_the_bearer_token_from_the_environment(
        teacher_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setenv("SIM_TEACHER_KEY", "tok-123")
    config = _config(teacher_server, api_key_env="SIM_TEACHER_KEY")
    # Execute
    cold_start_report(["arithmetic"], 1, seed=0, teacher=config)
    # Assert
    assert teacher_server.requests[0]["auth"] == "Bearer tok-123"


def test_unreachable_teacher_raises_teacher_error() -> None:
    # Prepare: a port nobody listens on
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    teacher = OpenAITeacher(TeacherConfig(base_url=f"http://127.0.0.1:{port}/v1",
                                          timeout_s=2))
    instance = family("arithmetic").generate(__import__("random").Random(0), "t")
    # Execute / Assert
    with pytest.raises(TeacherError, match=r"teacher at http://127\.0\.0\.1"):
        teacher.trajectory(instance, "t-1")


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"base_url": "ftp://host/v1"}, "base_url"),
    ({"base_url": "not a url"}, "base_url"),
    ({"base_url": "http://127.0.0.1:1/v1", "timeout_s": 0}, "timeout_s"),
    ({"base_url": "http://127.0.0.1:1/v1", "model": ""}, "model"),
])
def test_teacher_config_names_the_bad_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"TeacherConfig.{field}"):
        TeacherConfig(**kwargs)
