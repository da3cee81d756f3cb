"""Child servers: waited for by health, stopped as a group; vLLM's command line and env.

The children are small real HTTP servers (stdlib ``http.server``) written per test; no
model is involved.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hermes_fed.errors import ConfigError
from hermes_fed.serving.child_process import ChildServer, ChildServerError, free_port
from hermes_fed.serving.vllm_process import VllmServer, VllmServerConfig

SERVER = textwrap.dedent("""
    import http.server, os, signal, subprocess, sys
    port, pid_file, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "die":
        print("boom-marker: cannot serve", file=sys.stderr, flush=True)
        sys.exit(3)
    # a worker of the server's own, as vLLM's engine core and worker are
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open(pid_file, "w").write(str(worker.pid))
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = 200 if self.path == "/health" and mode != "never-healthy" else 503
            self.send_response(code)
            self.end_headers()
        def log_message(self, *args):
            pass
    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _child(tmp_path: Path, mode: str = "serve") -> tuple[ChildServer, Path]:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    port = free_port()
    pid_file = tmp_path / "worker.pid"
    child = ChildServer("toy", [sys.executable, str(script), str(port), str(pid_file), mode],
                        env=dict(os.environ), health_url=f"http://127.0.0.1:{port}/health",
                        log_path=tmp_path / "toy.log")
    return child, pid_file


def test_start_returns_once_healthy_and_stop_ends_the_whole_group(tmp_path: Path) -> None:
    # Prepare
    child, pid_file = _child(tmp_path)

    # Execute
    child.start(timeout_s=60)
    worker = int(pid_file.read_text())
    running_after_start = child.running and _alive(worker)
    code = child.stop(grace_s=10)

    # Assert
    assert running_after_start
    assert child.startup_s is not None and child.startup_s > 0
    assert code == -signal.SIGTERM
    assert not child.running
    assert not _alive(worker)


def test_a_child_that_exits_before_serving_raises_with_its_log_tail(tmp_path: Path) -> None:
    # Prepare
    child, _ = _child(tmp_path, mode="die")

    # Execute
    with pytest.raises(ChildServerError) as raised:
        child.start(timeout_s=60)

    # Assert
    assert "exited with status 3" in str(raised.value)
    assert "boom-marker: cannot serve" in str(raised.value)
    assert not child.running


def test_a_child_never_healthy_times_out_and_is_stopped(tmp_path: Path) -> None:
    # Prepare
    child, pid_file = _child(tmp_path, mode="never-healthy")

    # Execute
    with pytest.raises(ChildServerError, match=r"did not answer .*/health within 1 s"):
        child.start(timeout_s=1.0)

    # Assert
    assert not child.running
    if pid_file.exists():  # the worker may not have been spawned within the second
        assert not _alive(int(pid_file.read_text()))


def test_stop_kills_a_group_that_ignores_sigterm(tmp_path: Path) -> None:
    # Prepare
    child, pid_file = _child(tmp_path, mode="ignore-term")
    child.start(timeout_s=60)
    worker = int(pid_file.read_text())

    # Execute
    code = child.stop(grace_s=0.5)

    # Assert: the leader ignored SIGTERM (its worker did not: it died, and its exit can
    # take a moment on a loaded machine, so it is polled for)
    assert code == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(worker)


def test_stop_without_start_is_none_and_stop_is_idempotent(tmp_path: Path) -> None:
    # Prepare
    child, _ = _child(tmp_path)

    # Execute / Assert
    assert child.stop() is None
    child.start(timeout_s=60)
    first = child.stop(grace_s=10)
    assert child.stop(grace_s=10) == first


# --- vLLM's command line and environment ---------------------------------------------
@pytest.mark.parametrize(("key", "value"), [
    ("dtype", "float64"), ("port", 70000), ("max_lora_rank", 0), ("max_loras", 0),
    ("kv_cache_gib", 0), ("omp_threads", 0), ("start_timeout_s", 0.0), ("threads_bind", ""),
])
def test_vllm_config_rejects_a_bad_value_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"VllmServerConfig\.{key} .*{re.escape(repr(value))}"):
        VllmServerConfig(model="m", **{key: value})  # type: ignore[arg-type]


def test_vllm_argv_serves_lora_on_loopback_from_the_venv_python(tmp_path: Path) -> None:
    # Prepare
    config = VllmServerConfig(model="/models/base", venv=str(tmp_path / "v"), served_model_name="base")

    # Execute
    argv = config.argv(8123)

    # Assert
    assert argv[:3] == [str(tmp_path / "v" / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server"]
    flags: dict[str, str] = {}
    for i, token in enumerate(argv[3:], start=3):
        if token.startswith("--"):
            has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            flags[token] = argv[i + 1] if has_value else ""
    assert flags["--model"] == "/models/base"
    assert flags["--host"] == "127.0.0.1" and flags["--port"] == "8123"
    assert flags["--served-model-name"] == "base"
    assert flags["--max-lora-rank"] == "16" and flags["--max-loras"] == "2"
    assert flags["--dtype"] == "float32" and flags["--max-model-len"] == "512"
    assert flags["--enable-lora"] == "" and "--api-key" not in flags


def test_vllm_environment_is_offline_loopback_and_drops_our_pythonpath() -> None:
    # Execute
    env = VllmServerConfig(model="m").environment({"PYTHONPATH": "/repo", "HOME": "/root",
                                                   "HF_HUB_OFFLINE": "0"})

    # Assert
    assert "PYTHONPATH" not in env and env["HOME"] == "/root"
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env["VLLM_HOST_IP"] == "127.0.0.1"
    assert env["VLLM_NO_USAGE_STATS"] == "1"


def test_vllm_start_without_its_venv_says_which_script_makes_it(tmp_path: Path) -> None:
    # Prepare
    server = VllmServer(VllmServerConfig(model=str(tmp_path), venv=str(tmp_path / "missing")),
                        log_path=tmp_path / "vllm.log")

    # Execute / Assert
    with pytest.raises(ChildServerError, match=r"run scripts/vllm_venv\.sh"):
        server.start()
    assert not server.running
