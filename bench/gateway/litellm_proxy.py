"""LiteLLM's proxy in front of an OpenAI-compatible upstream, with its logging on (bench only).

The comparison point of the gateway bench: a widely deployed LLM gateway, configured the
way a deployer who records every call runs it. It lives in its own virtualenv
(``scripts/litellm_venv.sh`` makes ``.venv-litellm``, litellm[proxy] 1.108.7).

Logging. LiteLLM records calls through callbacks; every hosted sink (Langfuse, S3,
Datadog, ...) is off this machine, so the proxy runs LiteLLM's documented custom-callback
hook (``litellm_settings.callbacks``, a ``CustomLogger`` whose
``async_log_success_event`` / ``async_log_failure_event`` get each call's
``standard_logging_object``) writing that payload as one JSON line per call to a file,
line-buffered, no fsync: the nearest LiteLLM equivalent of capturing every call. Like
LiteLLM's own loggers, it runs in the proxy's event loop after the answer is sent, and
the payload holds the raw messages (no redaction: LiteLLM issue #35951).

    with LitellmProxy(LitellmProxyConfig(upstream_base_url="http://127.0.0.1:8801/v1"),
                      workdir=Path("var/litellm")) as proxy:
        openai.OpenAI(base_url=proxy.base_url, api_key=proxy.api_key)

Traps (2026-12): the proxy refuses to start without ``general_settings.master_key``;
importing litellm fetches a model price map from GitHub (3 tries, ~7 s offline) unless
``LITELLM_LOCAL_MODEL_COST_MAP=True``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hermes_fed.errors import ConfigError  # noqa: E402
from hermes_fed.serving.child_process import ChildServer, ChildServerError, free_port  # noqa: E402

DEFAULT_VENV = ROOT / ".venv-litellm"
LOGGER_MODULE = "hermes_bench_logger"
CALLS_FILE = "litellm_calls.jsonl"

# Written beside the config; LiteLLM imports it from the config's directory.
_LOGGER_SOURCE = '''"""hermes-fed bench: a LiteLLM callback writing each call's payload to a file."""
import json
import os

from litellm.integrations.custom_logger import CustomLogger


class JsonlCallLogger(CustomLogger):
    def __init__(self, path):
        super().__init__()
        self._file = open(path, "a", buffering=1, encoding="utf-8")

    def _write(self, kwargs, status):
        payload = kwargs.get("standard_logging_object") or {}
        self._file.write(json.dumps({"status": status, **payload}, default=str) + "\\n")

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs, "success")

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs, "failure")


proxy_handler_instance = JsonlCallLogger(os.environ["HERMES_BENCH_LITELLM_CALLS"])
'''


@dataclass(frozen=True, slots=True)
class LitellmProxyConfig:
    """One model name routed to one OpenAI-compatible upstream."""

    upstream_base_url: str = field(metadata={"help": "the upstream's OpenAI base URL (…/v1)"})
    model_name: str = field(default="bench-model", metadata={"help": "the name clients ask for"})
    upstream_model: str = field(default="", metadata={"help": "the name sent upstream ('' = model_name)"})
    master_key: str = field(default="sk-hermes-bench", metadata={
        "help": "the proxy's admin key; clients send it as their bearer token (LiteLLM requires one)"})
    logging: str = field(default="file", metadata={
        "help": "file: the JSONL call logger described in the module docstring; none: no callback"})
    num_workers: int = field(default=1, metadata={"help": "uvicorn worker processes"})
    venv: str = field(default="", metadata={"help": "virtualenv of litellm[proxy] ('' = .venv-litellm)"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=0, metadata={"help": "TCP port (0 = a free port)"})
    start_timeout_s: float = field(default=180.0, metadata={"help": "seconds to wait for health"})

    def __post_init__(self) -> None:
        if not self.upstream_base_url.startswith(("http://", "https://")):
            raise ConfigError(f"LitellmProxyConfig.upstream_base_url must be an http(s) URL, "
                              f"got {self.upstream_base_url!r}")
        if self.logging not in ("file", "none"):
            raise ConfigError(f"LitellmProxyConfig.logging must be file or none, got {self.logging!r}")
        if not self.master_key.startswith("sk-"):
            raise ConfigError(f"LitellmProxyConfig.master_key must start with 'sk-' (LiteLLM's rule), "
                              f"got {self.master_key[:3]!r}...")
        if self.num_workers < 1:
            raise ConfigError(f"LitellmProxyConfig.num_workers must be >= 1, got {self.num_workers!r}")

    def venv_path(self) -> Path:
        return Path(self.venv) if self.venv else DEFAULT_VENV

    def config_yaml(self) -> str:
        """The proxy's config (JSON is YAML; no YAML library needed here)."""
        doc: dict[str, object] = {
            "model_list": [{
                "model_name": self.model_name,
                "litellm_params": {"model": f"openai/{self.upstream_model or self.model_name}",
                                   "api_base": self.upstream_base_url, "api_key": "unused"},
            }],
            "general_settings": {"master_key": self.master_key},
            "litellm_settings": {"telemetry": False, "drop_params": True},
        }
        if self.logging == "file":
            doc["litellm_settings"] = {**doc["litellm_settings"],  # type: ignore[dict-item]
                                       "callbacks": [f"{LOGGER_MODULE}.proxy_handler_instance"]}
        return json.dumps(doc, indent=2) + "\n"


class LitellmProxy:
    """LiteLLM's proxy as a child process of this one."""

    def __init__(self, config: LitellmProxyConfig, *, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self._port = config.port
        self._child: ChildServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The OpenAI client's ``base_url``."""
        return f"{self.url}/v1"

    @property
    def api_key(self) -> str:
        return self.config.master_key

    @property
    def calls_path(self) -> Path:
        """The JSONL file the call logger appends to (logging = file)."""
        return self.workdir / CALLS_FILE

    @property
    def startup_s(self) -> float | None:
        return self._child.startup_s if self._child is not None else None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def start(self) -> LitellmProxy:
        """Write the config (and the logger module), start the proxy, wait for its health."""
        executable = self.config.venv_path() / "bin" / "litellm"
        if not executable.is_file():
            raise ChildServerError(f"no LiteLLM at {executable}: run scripts/litellm_venv.sh")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "litellm_config.yaml"
        config_path.write_text(self.config.config_yaml())
        (self.workdir / f"{LOGGER_MODULE}.py").write_text(_LOGGER_SOURCE)
        if self._port == 0:
            self._port = free_port(self.config.host)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update({
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # else a fetch from GitHub at import
            "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
            "HERMES_BENCH_LITELLM_CALLS": str(self.calls_path),
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        })
        argv = [str(executable), "--config", str(config_path), "--host", self.config.host,
                "--port", str(self._port), "--num_workers", str(self.config.num_workers)]
        self._child = ChildServer("litellm", argv, env=env, cwd=self.workdir,
                                  health_url=f"{self.url}/health/liveliness",
                                  log_path=self.workdir / "litellm.log")
        self._child.start(self.config.start_timeout_s)
        return self

    def stop(self) -> int | None:
        return self._child.stop(grace_s=20.0) if self._child is not None else None

    def logged_calls(self) -> int:
        """How many calls the logger has written so far."""
        if not self.calls_path.is_file():
            return 0
        with self.calls_path.open("rb") as fh:
            return sum(1 for _ in fh)

    def __enter__(self) -> LitellmProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
