"""A tenant node daemon as a real subprocess, for the ingest integration tests.

Readiness is observed by polling the gRPC health service, never by sleeping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from hermes_fed.client import IngestClient, RetryPolicy
from hermes_fed.serving.child_process import free_port
from hermes_fed.store import Keyring, SqlEventStore, open_store

TENANT = "acme"
TOKEN = "node-token-0123456789abcdef"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class NodeProcess:
    """``hermes-fed node serve`` on 127.0.0.1 with its own config, log file and ports."""

    def __init__(self, workdir: Path, store_url: str, schema: str | None = None,
                 **settings: Any) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.store_url = store_url
        self.schema = schema
        self.port = free_port()
        self.metrics_port = free_port()
        self.settings = settings
        self.config_path = workdir / "node.toml"
        self.log_path = workdir / "node.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.root_certificates: bytes | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def write_config(self) -> None:
        values: dict[str, Any] = {
            "tenant_id": TENANT, "store_url": self.store_url, "token": TOKEN,
            "listen": self.target, "metrics_port": self.metrics_port, "data_dir": "var",
            "shutdown_grace_s": 10.0, "max_event_bytes": 65536, "max_batch_events": 500,
        }
        tables = {k: v for k, v in self.settings.items() if isinstance(v, dict)}
        values.update({k: v for k, v in self.settings.items() if not isinstance(v, dict)})
        if self.schema:
            values["store_schema"] = self.schema
        lines = [f"{k} = {_toml(v)}" for k, v in values.items()]
        for name, table in tables.items():
            lines.append(f"[{name}]")
            lines.extend(f"{k} = {_toml(v)}" for k, v in table.items())
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout_s: float = 90.0) -> None:
        self.write_config()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hermes_fed.cli", "node", "serve", "--config",
             str(self.config_path)], stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=self.workdir)
        log.close()
        client = self.client(timeout_s=5.0)
        try:
            client.transport.wait_until_serving(timeout_s)
        except Exception as exc:
            code = self.process.poll()
            raise RuntimeError(
                f"node did not become SERVING (exit={code}):\n{self.log()}") from exc
        finally:
            client.transport.close()

    def client(self, token: str = TOKEN, timeout_s: float = 20.0, **kw: Any) -> IngestClient:
        retry = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.1,
                            timeout_s=timeout_s)
        return IngestClient(self.target, tenant_id=TENANT, token=token, retry=retry,
                            root_certificates=self.root_certificates, **kw)

    def signal(self, sig: signal.Signals) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        return self.signal(signal.SIGTERM)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def open_store(self) -> SqlEventStore:
        """The node's log, opened from the test process with the node's key ring."""
        keyring = Keyring.from_file(self.workdir / "var" / "keyring.json")
        return open_store(self.store_url, TENANT, keyring=keyring, schema=self.schema)
