"""Flower deployment on loopback: SuperLink and SuperNode processes, ``flwr run``, run status.

Every process binds 127.0.0.1 only, gets a private ``FLWR_HOME``, telemetry and update
checks off, and is started with ``--insecure`` on loopback unless a certificate directory
from ``hermes-fed certs init`` is given (``certs=``): then the SuperLink serves TLS with
``server.pem`` (SAN IP:127.0.0.1), SuperNodes and the ``flwr`` CLI trust ``ca.pem``, and
``node_auth=True`` makes the SuperLink accept only SuperNodes whose ECDSA public key was
registered (:func:`register_supernode`; DESIGN.md §9). Readiness is polled on ``GET /health``; processes are
stopped by PID (SIGTERM to the process group, then SIGKILL). ``flwr run`` exits 0 even
when the ServerApp fails, so :func:`run_app` reads the run's status with
``flwr ls <conn> --run-id <id> --format json`` and wants ``finished:completed``.
"""

from __future__ import annotations

import contextlib
import json
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
from typing import IO, Any

from hermes_fed.errors import FederationError

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
COMPLETED = "finished:completed"
_BIN = Path(sys.executable).parent


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
        "PATH": f"{_BIN}{os.pathsep}{env.get('PATH', '')}",
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


def _tls_files(certs: Path) -> tuple[Path, Path, Path]:
    """``ca.pem``, ``server.pem``, ``server.key`` of a ``certs init`` directory (must exist)."""
    files = (certs / "ca.pem", certs / "server.pem", certs / "server.key")
    for path in files:
        if not path.is_file():
            raise FederationError(f"TLS file {path} is missing: run `hermes-fed certs init "
                                  f"{certs}` first")
    return files


IN_MEMORY_STATE = ":flwr-in-memory:"


def start_superlink(home: Path, *, port: int | None = None, isolation: str = "subprocess",
                    env: Mapping[str, str] | None = None, certs: Path | None = None,
                    node_auth: bool = False, persistent: bool = True) -> FlowerProcess:
    """``flower-superlink`` on 127.0.0.1; waits for health.

    ``persistent``: its state (runs, nodes, messages) in ``home/state.db``, surviving a
    restart, as a served coordinator needs; otherwise in memory, for a federation that
    lives as long as its process (the local federation: tests, demo). Under load the
    SQLite state can fail a call once a lock outlasts its 5 s busy_timeout, and Flower's
    task heartbeat gives up for good on such an error, which expires the run: a mechanism
    that fits a loaded CI's one "No heartbeat received from the task" (not reproduced).
    In memory there is no such lock. ``certs``: serve TLS from a
    ``certs init`` directory; ``node_auth``: accept only registered SuperNode keys
    (needs ``certs``).
    """
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    if node_auth and certs is None:
        raise FederationError("SuperNode authentication needs TLS: pass the certs directory")
    security = ["--insecure"]
    if certs is not None:
        ca, cert, key = _tls_files(certs)
        security = ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert),
                    "--ssl-keyfile", str(key)]
    if node_auth:
        security.append("--enable-supernode-auth")
    argv = [str(_BIN / "flower-superlink"), *security,
            "--disable-runtime-dependency-installation",
            "--host", LOOPBACK, "--port", str(port),
            "--database", str(home / "state.db") if persistent else IN_MEMORY_STATE,
            "--isolation", isolation]
    proc = spawn("superlink", argv, env=flower_env(home, env), log_path=home / "superlink.log",
                 port=port, cwd=home)
    try:
        wait_healthy(proc, ca_file=certs / "ca.pem" if certs is not None else None)
    except FederationError:
        proc.stop()
        raise
    return proc


def node_config_arg(node_config: Mapping[str, str | int | float]) -> str:
    """Render ``--node-config`` (``key="value" n=3``); refuses quotes in values."""
    parts = []
    for key, value in node_config.items():
        if isinstance(value, str):
            if '"' in value or "\n" in value:
                raise FederationError(f"node-config {key}: value must not hold quotes/newlines")
            parts.append(f'{key}="{value}"')
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
                                                     str(_tls_files(certs)[0])]
    if auth_key is not None:
        security += ["--auth-supernode-private-key", str(auth_key)]
    argv = [str(_BIN / "flower-supernode"), *security, "--superlink", superlink,
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


def write_connection(flwr_home: Path, name: str, superlink: str,
                     certs: Path | None = None) -> Path:
    """Write ``$FLWR_HOME/config.toml`` with one SuperLink connection (TLS with ``certs``)."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    path = flwr_home / "config.toml"
    security = ("insecure = true" if certs is None
                else f'root-certificates = "{_tls_files(certs)[0]}"')
    path.write_text(
        f'[superlink]\ndefault = "{name}"\n\n[superlink.{name}]\n'
        f'address = "{superlink}"\n{security}\n')
    return path


def register_supernode(flwr_home: Path, connection: str, public_key: Path) -> str:
    """``flwr supernode register KEY.pub <conn>``: allow that key's SuperNode; its node id."""
    import re

    res = _flwr(["supernode", "register", str(public_key), connection], flwr_home, 60)
    found = re.search(r"SuperNode (\d+) registered", res.stdout + res.stderr)
    if res.returncode != 0 or found is None:
        raise FederationError(f"flwr supernode register {public_key} failed (exit "
                              f"{res.returncode}): {(res.stdout + res.stderr)[-500:]}")
    return found.group(1)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """A finished ``flwr run``: its id, Flower's status and the ServerApp's log."""

    run_id: str
    status: str
    details: str
    elapsed_s: float
    bytes_in: int
    bytes_out: int
    log: str

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED


def _flwr(args: Sequence[str], flwr_home: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(_BIN / "flwr"), *args], env=flower_env(flwr_home),
                          capture_output=True, text=True, timeout=timeout, check=False)


def run_status(flwr_home: Path, connection: str, run_id: str) -> dict[str, Any]:
    """``flwr ls <conn> --run-id <id> --format json``: the run's row."""
    res = _flwr(["ls", connection, "--run-id", run_id, "--format", "json"], flwr_home, 60)
    try:
        body = json.loads(res.stdout)
        row: dict[str, Any] = body["runs"][0]
    except (ValueError, KeyError, IndexError) as exc:
        raise FederationError(f"flwr ls gave no status for run {run_id}: "
                              f"{res.stdout[-300:]} {res.stderr[-300:]}") from exc
    return row


def run_app(app_dir: Path, flwr_home: Path, connection: str, *,
            run_config: Mapping[str, str | int | float] | None = None,
            timeout: float = 600.0) -> RunOutcome:
    """``flwr run <app_dir> <connection> --stream`` and then the run's real status.

    Raises
    ------
    FederationError
        When the run could not be started, or did not reach ``finished:completed``.
    """
    args = ["run", str(app_dir), connection, "--stream"]
    for key, value in (run_config or {}).items():
        rendered = f'"{value}"' if isinstance(value, str) else str(value)
        args += ["--run-config", f"{key}={rendered}"]
    started = time.monotonic()
    res = _flwr(args, flwr_home, timeout)
    elapsed = time.monotonic() - started
    output = res.stdout + res.stderr
    run_id = next((line.rsplit(" ", 1)[-1] for line in output.splitlines()
                   if "Successfully started run" in line), None)
    if res.returncode != 0 or run_id is None:
        raise FederationError(f"flwr run failed (exit {res.returncode}): {output[-2000:]}")
    row = run_status(flwr_home, connection, run_id)
    traffic = row.get("network-traffic", {})
    outcome = RunOutcome(run_id=run_id, status=str(row.get("status")),
                         details=str(row.get("status-details", "")), elapsed_s=elapsed,
                         bytes_in=int(traffic.get("inbound-bytes", 0)),
                         bytes_out=int(traffic.get("outbound-bytes", 0)), log=output)
    if not outcome.completed:
        raise FederationError(f"run {run_id} ended {outcome.status} ({outcome.details}); "
                              f"ServerApp log tail:\n{output[-3000:]}")
    return outcome
