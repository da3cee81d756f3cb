"""Real processes for the gateway tests: ``model serve``, the gateway, adapters on disk.

Every server listens on 127.0.0.1 on a free port, is waited for by polling its health
endpoint (never by sleeping), and is stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from hermes_fed.serving.child_process import free_port

BASE_MODEL = Path(__file__).resolve().parents[3] / "examples" / "flywheel" / "base_model"
TENANT = "acme"
TOKEN = "gateway-token-0123456789"


def make_adapter(directory: Path, seed: int, scale: float = 0.5) -> Path:
    """A LoRA adapter of the packaged base with random, non-zero B (answers differ from the
    base), written by the production ``save_adapter``."""
    from hermes_fed.training.adapter import (
        AdapterManifest,
        adapter_state,
        base_model_sha256,
        build_peft_model,
        load_base_model,
        save_adapter,
    )
    from hermes_fed.training.config import LoraTrainingConfig

    config = LoraTrainingConfig(r=4, seed=seed)
    model, _ = load_base_model(BASE_MODEL)
    state = adapter_state(build_peft_model(model, config))
    rng = np.random.default_rng(seed)
    state = {k: (rng.normal(0, scale, v.shape).astype(np.float32) if ".lora_B." in k else v)
             for k, v in state.items()}
    return save_adapter(directory, state, config,
                        AdapterManifest(base_model_sha256(BASE_MODEL)), base_model_dir=BASE_MODEL)


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[3])
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))


class Server:
    """A subprocess serving HTTP, ready once ``GET <health>`` answers 200."""

    def __init__(self, argv: list[str], port: int, log_path: Path, health: str = "/health",
                 scheme: str = "http", verify: Any = True,
                 env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.env = env
        self.port = port
        self.log_path = log_path
        self.health = health
        self.scheme = scheme
        self.verify = verify
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                            env=self.env if self.env is not None else _env(),
                                            start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.argv[3:5]} exited {self.process.returncode}:\n"
                                   f"{self.log()}")
            try:
                if httpx.get(self.url + self.health, timeout=1.0, verify=self.verify).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # a poll interval, not a wait for readiness
        self.stop()
        raise RuntimeError(f"{self.argv[3:5]} not healthy in {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM to the server's process group (vLLM runs engine processes under its API
        server), SIGKILL to the group if it has not ended in 30 s."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=30)
        self._signal_group(signal.SIGKILL)  # children left behind by the leader
        return self.process.returncode

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)


def plan_of(gateway: Server, expected: str | None, timeout_s: float = 30.0) -> str | None:
    """The plan ``gateway`` serves (``/health``), once it is ``expected`` or ``timeout_s``
    has passed (the gateway looks at its log every ``plan_poll_s``)."""
    deadline = time.monotonic() + timeout_s
    plan = None
    while time.monotonic() < deadline:
        plan = httpx.get(gateway.url + "/health").json()["plan"]
        if plan == expected:
            break
        time.sleep(0.05)
    return plan


def capture_process_of(gateway: Server, timeout_s: float = 120.0) -> int:
    """The pid of ``gateway``'s capture process once it is ready (it loads after the
    gateway answers; until then the gateway captures every call itself)."""
    deadline = time.monotonic() + timeout_s
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = httpx.get(gateway.url + "/health", verify=gateway.verify).json()["capture_process"]
        if state["state"] == "ready":
            return int(state["pid"])
        time.sleep(0.05)
    raise RuntimeError(f"no capture process ready in {timeout_s} s ({state}):\n{gateway.log()}")


def verified_trajectories(node: Node) -> dict[str, Any]:
    """The trajectories in the node's log, once its hash chain verified."""
    from hermes_fed.serving.assembly import assemble_trajectories

    store = node.open_store()
    try:
        assert store.verify().ok
        return assemble_trajectories(store.read())
    finally:
        store.close()


def metric(text: str, name: str) -> float:
    """The value of an unlabelled sample in a Prometheus exposition."""
    values = [float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert values, f"{name} not exported"
    return values[0]


def model_serve(workdir: Path, *extra: str) -> Server:
    port = free_port()
    return Server([sys.executable, "-m", "hermes_fed.cli", "model", "serve", str(BASE_MODEL),
                   "--port", str(port), "--threads", "1", *extra], port,
                  workdir / f"model-serve-{port}.log")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Node:
    """A tenant node's directory and config: ``node.toml`` with a ``[gateway]`` table."""

    def __init__(self, workdir: Path, upstream_url: str, store_url: str | None = None,
                 schema: str | None = None, tls: dict[str, str] | None = None,
                 top: dict[str, Any] | None = None, **gateway: Any) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config_path = workdir / "node.toml"
        settings: dict[str, Any] = {"tenant_id": TENANT, "token": TOKEN, "metrics_port": 0,
                                    "data_dir": "var"}
        if store_url:
            settings["store_url"] = store_url
        if schema:
            settings["store_schema"] = schema
        settings.update(top or {})
        table = {"listen": f"127.0.0.1:{self.port}", "upstream_url": upstream_url,
                 "plan_poll_s": 0.2, **gateway}
        lines = [f"{k} = {_toml(v)}" for k, v in settings.items()]
        if tls:
            lines.append("[tls]")
            lines.extend(f"{k} = {_toml(v)}" for k, v in tls.items())
        lines.append("[gateway]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in table.items())
        self.config_path.write_text("\n".join(lines) + "\n")
        self.scheme = "https" if tls else "http"

    def gateway(self, verify: Any = True) -> Server:
        return Server([sys.executable, "-m", "hermes_fed.cli", "node", "gateway", "--config",
                       str(self.config_path)], self.port, self.workdir / "gateway.log",
                      scheme=self.scheme, verify=verify)

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hermes_fed.cli", "node", *argv,
                               "--config", str(self.config_path)], capture_output=True,
                              text=True, env=_env(), timeout=120)

    def open_store(self) -> Any:
        from tenant_node.config import load_node_config
        from tenant_node.ingest.runtime import open_node_store

        return open_node_store(load_node_config(self.config_path))


def stub_upstream(workdir: Path, delay_ms: float = 0.0) -> Server:
    """The stub upstream; ``delay_ms``: every answer waits that long first."""
    port = free_port()
    env = dict(_env(), STUB_DELAY_MS=str(delay_ms)) if delay_ms else None
    return Server([sys.executable, "-m", "tests.integration.gateway.stub_upstream", str(port)],
                  port, workdir / f"stub-{port}.log", env=env)
