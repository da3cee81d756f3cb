"""The OpenAI-compatible HTTP judge against a real local server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hermes_fed.errors import JudgeError
from hermes_fed.events.session import TrajectoryRecorded
from hermes_fed.quality.config import HttpJudgeConfig
from hermes_fed.quality.http_judge import OpenAICompatibleJudge, parse_score

TRAJ = TrajectoryRecorded(
    trajectory_id="t-1", task="What is 2+3?", task_type="arithmetic",
    messages=[{"role": "user", "content": "What is 2+3?"},
              {"role": "assistant", "content": "5"}],
    tools=[], final_response="5",
)


@dataclass
class Behaviour:
    """What the fake endpoint answers; requests it saw are recorded."""

    content: str = '{"score": 0.9, "rationale": "correct"}'
    status: int = 200
    raw: bytes | None = None
    hang: threading.Event | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            body = json.loads(self.rfile.read(length))
            behaviour.requests.append({"path": self.path, **body})
            behaviour.headers.append(dict(self.headers))
            if behaviour.hang is not None:
                behaviour.hang.wait(5)  # released by the test's teardown
            if self.path != "/v1/chat/completions":
                self.send_response(404)
                self.end_headers()
                self.wfile.write(b'{"error": "not found"}')
                return
            payload = behaviour.raw if behaviour.raw is not None else json.dumps({
                "id": "cmpl-1", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": behaviour.content}}],
            }).encode()
            # the client may have given up first (the timeout test): nothing to answer
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(behaviour.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", behaviour
    finally:
        if behaviour.hang is not None:
            behaviour.hang.set()
        httpd.shutdown()
        httpd.server_close()


def test_scores_a_trajectory_through_the_endpoint(server: tuple[str, Behaviour]) -> None:
    # Prepare
    url, behaviour = server
    judge = OpenAICompatibleJudge(HttpJudgeConfig(url=url, model="grader", name="llm"))
    # Execute
    verdict = judge.judge(TRAJ)
    # Assert
    assert verdict.score == 0.9 and verdict.judge == "llm"
    sent = behaviour.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["model"] == "grader"
    assert json.loads(sent["messages"][1]["content"])["final_response"] == "5"
    # the model's free text stays on the verdict, not in the event
    assert verdict.checks[0].detail == "correct"
    assert "correct" not in verdict.to_event().rationale


def test_sends_the_bearer_token_from_the_environment(server: tuple[str, Behaviour],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    url, behaviour = server
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    OpenAICompatibleJudge(HttpJudgeConfig(url=url, api_key_env="JUDGE_KEY")).judge(TRAJ)
    assert behaviour.headers[0]["Authorization"] == "Bearer sk-test"


def test_missing_token_variable_is_a_clear_error(server: tuple[str, Behaviour],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = server
    monkeypatch.delenv("NO_SUCH_JUDGE_KEY", raising=False)
    judge = OpenAICompatibleJudge(HttpJudgeConfig(url=url, api_key_env="NO_SUCH_JUDGE_KEY"))
    with pytest.raises(JudgeError, match="NO_SUCH_JUDGE_KEY"):
        judge.judge(TRAJ)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"status": 500, "raw": b'{"error": "overloaded"}'}, "HTTP 500: .*overloaded"),
        ({"raw": b"not json"}, "no choices\\[0\\].message.content"),
        ({"raw": b'{"choices": []}'}, "no choices"),
        ({"content": "I cannot grade this."}, "holds no score"),
        ({"content": '{"score": 7}'}, "outside \\[0, 1\\]"),
    ],
)
def test_endpoint_failures_are_judge_errors(server: tuple[str, Behaviour],
                                            setup: dict[str, Any], message: str) -> None:
    url, behaviour = server
    for key, value in setup.items():
        setattr(behaviour, key, value)
    with pytest.raises(JudgeError, match=message):
        OpenAICompatibleJudge(HttpJudgeConfig(url=url)).judge(TRAJ)


def test_wrong_path_is_reported_with_the_url(server: tuple[str, Behaviour]) -> None:
    url, _ = server
    judge = OpenAICompatibleJudge(HttpJudgeConfig(url=url.replace("/v1", "/v2")))
    with pytest.raises(JudgeError, match="/v2/chat/completions answered HTTP 404"):
        judge.judge(TRAJ)


def test_timeout_is_reported(server: tuple[str, Behaviour]) -> None:
    url, behaviour = server
    behaviour.hang = threading.Event()
    judge = OpenAICompatibleJudge(HttpJudgeConfig(url=url, timeout_s=0.2))
    with pytest.raises(JudgeError, match=r"timed out after 0\.2s"):
        judge.judge(TRAJ)


def test_unreachable_endpoint() -> None:
    # Prepare: a port that was just free (bound then released)
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = OpenAICompatibleJudge(HttpJudgeConfig(url=f"http://127.0.0.1:{port}/v1",
                                                  timeout_s=2))
    with pytest.raises(JudgeError, match="unreachable"):
        judge.judge(TRAJ)


@pytest.mark.parametrize("url", ["http://judge.example.com/v1", "http://10.0.0.8:8000/v1"])
def test_remote_hosts_need_explicit_consent(url: str) -> None:
    with pytest.raises(JudgeError, match="allow_remote"):
        OpenAICompatibleJudge(HttpJudgeConfig(url=url))
    assert OpenAICompatibleJudge(HttpJudgeConfig(url=url, allow_remote=True)).endpoint.endswith(
        "/v1/chat/completions")


@pytest.mark.parametrize(
    ("reply", "score", "how"),
    [
        ('{"score": 0.25, "rationale": "meh"}', 0.25, "json"),
        ('Here you go:\n```json\n{"score": 1, "rationale": "ok"}\n```', 1.0, "json"),
        ("Score: 0.7 because it is right", 0.7, "score field"),
        ("I would give it 8/10.", 0.8, "fraction /10"),
        ("4 / 5", 0.8, "fraction /5"),
    ],
)
def test_parse_score(reply: str, score: float, how: str) -> None:
    value, _, method = parse_score(reply)
    assert value == pytest.approx(score) and method == how
