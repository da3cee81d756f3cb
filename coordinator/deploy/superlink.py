"""The coordinator's Flower processes: the SuperLink, ``flwr run``, run status, node keys.

The SuperLink serves ``--insecure`` on loopback unless a certificate directory from
``hermes-fed certs init`` is given (``certs=``): then it serves TLS with ``server.pem``
(SAN IP:127.0.0.1), and the ``flwr`` CLI trusts ``ca.pem``; ``node_auth=True`` makes it
accept only SuperNodes whose ECDSA public key was registered (:func:`register_supernode`;
DESIGN.md §9). ``flwr run`` exits 0 even when the ServerApp fails, so :func:`run_app`
reads the run's status with ``flwr ls <conn> --run-id <id> --format json`` and wants
``finished:completed``.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hermes_fed.errors import FederationError
from hermes_fed.federation.processes import (
    BIN,
    LOOPBACK,
    FlowerProcess,
    flower_env,
    free_port,
    poll_env,
    spawn,
    tls_files,
    wait_healthy,
)

from .app_stage import staged_app

COMPLETED = "finished:completed"
IN_MEMORY_STATE = ":flwr-in-memory:"


def start_superlink(home: Path, *, port: int | None = None, isolation: str = "subprocess",
                    env: Mapping[str, str] | None = None, certs: Path | None = None,
                    node_auth: bool = False, persistent: bool = True,
                    poll_s: float | None = None) -> FlowerProcess:
    """``flower-superlink`` on 127.0.0.1; waits for health.

    ``persistent``: its state (runs, nodes, messages) in ``home/state.db``, surviving a
    restart, as a served coordinator needs; otherwise in memory, for a federation that
    lives as long as its process (the local federation: tests, demo). Under load the
    SQLite state can fail a call once a lock outlasts its 5 s busy_timeout, and Flower's
    task heartbeat gives up for good on such an error, which expires the run: a mechanism
    that fits a loaded CI's one "No heartbeat received from the task" (not reproduced).
    In memory there is no such lock. ``certs``: serve TLS from a
    ``certs init`` directory; ``node_auth``: accept only registered SuperNode keys
    (needs ``certs``). ``poll_s``: its SuperExec asks for the next ServerApp task every
    ``poll_s`` seconds instead of Flower's 1 s (:func:`~hermes_fed.federation.processes.poll_env`).
    """
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    if node_auth and certs is None:
        raise FederationError("SuperNode authentication needs TLS: pass the certs directory")
    security = ["--insecure"]
    if certs is not None:
        ca, cert, key = tls_files(certs)
        security = ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert),
                    "--ssl-keyfile", str(key)]
    if node_auth:
        security.append("--enable-supernode-auth")
    argv = [str(BIN / "flower-superlink"), *security,
            "--disable-runtime-dependency-installation",
            "--host", LOOPBACK, "--port", str(port),
            "--database", str(home / "state.db") if persistent else IN_MEMORY_STATE,
            "--isolation", isolation]
    proc = spawn("superlink", argv, env=flower_env(home, {**poll_env(poll_s), **(env or {})}),
                 log_path=home / "superlink.log", port=port, cwd=home)
    try:
        wait_healthy(proc, ca_file=certs / "ca.pem" if certs is not None else None)
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
                else f'root-certificates = "{tls_files(certs)[0]}"')
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
    return subprocess.run([str(BIN / "flwr"), *args], env=flower_env(flwr_home),
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
    # Flower walks every file under the app directory to build the FAB (a checkout's
    # virtualenvs included): it builds from a clean copy instead (app_stage).
    try:
        app = staged_app(app_dir, flwr_home / "staged-apps")
    except OSError as exc:
        raise FederationError(f"cannot stage the Flower App at {app_dir}: {exc}") from exc
    args = ["run", str(app), connection, "--stream"]
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
