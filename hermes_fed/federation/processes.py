"""Flower processes on loopback: start, wait for health, stop by PID; the SuperNode.

Every process binds 127.0.0.1 only, gets a private ``FLWR_HOME``, telemetry and update
checks off, and is started with ``--insecure`` on loopback unless TLS files are given.
Readiness is polled on ``GET /health``; processes are stopped by PID (SIGTERM to the
process group, then SIGKILL). Both apps use this module: a node starts its SuperNode
(``hermes-fed node join``), the coordinator its SuperLink
(:mod:`coordinator.deploy.superlink`) and, for tests and the demo, whole local
federations.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hermes_fed.errors import FederationError

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
BIN = Path(sys.executable).parent
"""Where this environment's Flower commands live."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def flower_env(flwr_home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every Flower process: private home, offline, quiet, one thread."""
    env = dict(os.environ)
    env.update({
        "FLWR_HOME": str(flwr_home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
        "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
        "OMP_WAIT_POLICY": "PASSIVE",
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    })
    env.update(extra or {})
    return env


@dataclass(slots=True)
class FlowerProcess:
    """A started Flower process: its name, port, PID and log file."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group by PID, then SIGKILL what is left after ``timeout``."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.warning("process=%s pid=%d action=kill", self.name, self.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=timeout)
        else:
            # the leader may be gone while children (flower-superexec) linger
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None


def spawn(name: str, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path,
          port: int, cwd: Path | None = None) -> FlowerProcess:
    """Start ``argv`` in its own process group with output to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    popen = subprocess.Popen(  # the argv is ours, never user text through a shell
        list(argv), stdout=log, stderr=subprocess.STDOUT, env=dict(env),
        cwd=str(cwd) if cwd else None, start_new_session=True,
    )
    logger.info("process=%s pid=%d port=%d action=start", name, popen.pid, port)
    return FlowerProcess(name=name, port=port, popen=popen, log_path=log_path, _log=log)


def wait_healthy(proc: FlowerProcess, timeout: float = 60.0, interval: float = 0.1,
                 ca_file: Path | None = None) -> float:
    """Poll ``GET http(s)://127.0.0.1:<port>/health`` until 200; returns the seconds waited.

    With ``ca_file`` the endpoint is HTTPS, verified against that CA.
    """
    import ssl

    started = time.monotonic()
    url = f"{'https' if ca_file else 'http'}://{proc.address}/health"
    tls = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    while True:
        if not proc.alive():
            raise FederationError(
                f"{proc.name} (pid {proc.pid}) exited with {proc.popen.returncode} before it "
                f"was healthy; log {proc.log_path}:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1.0, context=tls) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() - started > timeout:
            raise FederationError(f"{proc.name} not healthy at {url} after {timeout:.0f} s; "
                                  f"log {proc.log_path}")
        time.sleep(interval)


def tls_files(certs: Path) -> tuple[Path, Path, Path]:
    """``ca.pem``, ``server.pem``, ``server.key`` of a ``certs init`` directory (must exist)."""
    files = (certs / "ca.pem", certs / "server.pem", certs / "server.key")
    for path in files:
        if not path.is_file():
            raise FederationError(f"TLS file {path} is missing: run `hermes-fed certs init "
                                  f"{certs}` first")
    return files


def node_config_arg(node_config: Mapping[str, str | int | float | bool]) -> str:
    """Render ``--node-config`` as TOML values (``key="value" n=3 flag=true``); refuses
    quotes in values."""
    parts = []
    for key, value in node_config.items():
        if isinstance(value, str):
            if '"' in value or "\n" in value:
                raise FederationError(f"node-config {key}: value must not hold quotes/newlines")
            parts.append(f'{key}="{value}"')
        elif isinstance(value, bool):  # before int: bool is an int, and TOML wants lowercase
            parts.append(f"{key}={str(value).lower()}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def start_supernode(home: Path, superlink: str, node_config: Mapping[str, str | int | float], *,
                    port: int | None = None, isolation: str = "subprocess",
                    name: str = "supernode", env: Mapping[str, str] | None = None,
                    certs: Path | None = None, auth_key: Path | None = None,
                    ) -> FlowerProcess:
    """``flower-supernode`` on 127.0.0.1 connecting to ``superlink`` (``127.0.0.1:P``).

    ``certs``: verify the SuperLink's TLS certificate against ``certs/ca.pem``;
    ``auth_key``: the node's ECDSA private key (OpenSSH format) for SuperNode auth. A
    node whose key is not registered is refused by the SuperLink and exits (code 305)
    shortly after it reports healthy.
    """
    host, _, _ = superlink.partition(":")
    if host != LOOPBACK:
        raise FederationError(f"the SuperLink address must be on {LOOPBACK}, got {superlink!r}")
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    security = ["--insecure"] if certs is None else ["--root-certificates",
                                                     str(tls_files(certs)[0])]
    if auth_key is not None:
        security += ["--auth-supernode-private-key", str(auth_key)]
    argv = [str(BIN / "flower-supernode"), *security, "--superlink", superlink,
            "--host", LOOPBACK, "--port", str(port), "--isolation", isolation,
            "--node-config", node_config_arg(node_config)]
    proc = spawn(name, argv, env=flower_env(home, env), log_path=home / f"{name}.log",
                 port=port, cwd=home)
    try:
        wait_healthy(proc)
    except FederationError:
        proc.stop()
        raise
    return proc
