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
import re
import signal
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
from hermes_fed.serving.child_process import free_port as free_port  # re-exported

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
BIN = Path(sys.executable).parent
"""Where this environment's Flower commands live."""


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
    log_offset: int = 0
    """Size of the (appended) log file when this process started: what came before is an
    earlier process's."""

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_since_start(self) -> str:
        """What this process wrote to its log (not earlier runs of the same home)."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self.log_offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

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
    offset = log_path.stat().st_size if log_path.exists() else 0
    log = log_path.open("ab")
    popen = subprocess.Popen(  # the argv is ours, never user text through a shell
        list(argv), stdout=log, stderr=subprocess.STDOUT, env=dict(env),
        cwd=str(cwd) if cwd else None, start_new_session=True,
    )
    logger.info("process=%s pid=%d port=%d action=start", name, popen.pid, port)
    return FlowerProcess(name=name, port=port, popen=popen, log_path=log_path, _log=log,
                         log_offset=offset)


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
        if 0 < timeout < time.monotonic() - started:
            raise FederationError(f"{proc.name} not healthy at {url} after {timeout:.0f} s; "
                                  f"log {proc.log_path}")
        time.sleep(interval)


def poll_env(poll_s: float | None, *, supernode: bool = False) -> dict[str, str]:
    """The environment that makes a Flower process poll every ``poll_s`` seconds.

    Flower 1.42 polls at a fixed pace at each hop of a message: a SuperExec asks for a
    new task every 1 s (the SuperLink's, which starts the ServerApp, and a SuperNode's,
    which starts a ClientApp per message), and a SuperNode pulls messages every 3 s.
    ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL`` is Flower's own knob for the first (read by
    ``flwr.supercore.superexec.run_superexec``; 0.01 to 60 s); the second has none, and
    ``supernode=True`` adds the variable :mod:`hermes_fed.federation.supernode_launcher`
    reads. ``None``: no variables, Flower's defaults. The price of a short interval is a
    request every ``poll_s`` per idle process (loopback HTTP, a few ms of CPU each).
    """
    if poll_s is None:
        return {}
    from hermes_fed.federation.supernode_launcher import POLL_ENV, poll_interval

    value = f"{poll_s:g}"
    poll_interval({POLL_ENV: value})  # the same bounds for both, checked here, not in Flower
    return {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": value,
            **({POLL_ENV: value} if supernode else {})}


def tls_files(certs: Path) -> tuple[Path, Path, Path]:
    """``ca.pem``, ``server.pem``, ``server.key`` of the coordinator's ``certs init``
    directory, each read and checked (an empty or wrong file fails here, not in Flower)."""
    from hermes_fed.errors import ConfigError
    from hermes_fed.federation.node_keys import check_certificate, check_private_key_pem

    advice = (f"run `hermes-fed certs init {certs}` on the coordinator's machine (these "
              "files belong to the coordinator; nodes need only its ca.pem)")
    try:
        return (check_certificate(certs / "ca.pem", "the CA certificate", advice),
                check_certificate(certs / "server.pem", "the SuperLink's certificate", advice),
                check_private_key_pem(certs / "server.key", "the SuperLink's private key",
                                      advice))
    except ConfigError as exc:
        raise FederationError(str(exc)) from None


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
                    ca_file: Path | None = None, auth_key: Path | None = None,
                    poll_s: float | None = None) -> FlowerProcess:
    """``flower-supernode`` on 127.0.0.1 connecting to ``superlink`` (``127.0.0.1:P``).

    ``ca_file``: verify the SuperLink's TLS certificate against the coordinator's
    ``ca.pem`` (all a node needs of the coordinator's certificates); ``auth_key``: the
    node's own ECDSA private key (OpenSSH format, ``hermes-fed node keygen``) for
    SuperNode auth. Healthy is not accepted: :func:`wait_accepted` waits for the SuperLink
    to take the node (a node whose key is not registered exits, code 305, after it
    reported healthy).

    ``poll_s``: the node polls every ``poll_s`` seconds instead of Flower's fixed pace, see
    :func:`poll_env` (``None``: plain ``flower-supernode``, Flower's own 3 s pulls).
    """
    from hermes_fed.errors import ConfigError
    from hermes_fed.federation.node_keys import check_ca_certificate, check_private_key

    host, _, _ = superlink.partition(":")
    if host != LOOPBACK:
        raise FederationError(f"the SuperLink address must be on {LOOPBACK}, got {superlink!r}")
    if auth_key is not None and ca_file is None:
        raise FederationError("node authentication needs TLS: pass the coordinator's ca.pem "
                              "(--ca) with the node's key (--auth-key)")
    try:
        security = (["--insecure"] if ca_file is None
                    else ["--root-certificates", str(check_ca_certificate(ca_file))])
        if auth_key is not None:
            security += ["--auth-supernode-private-key", str(check_private_key(auth_key))]
    except ConfigError as exc:
        raise FederationError(str(exc)) from None
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    command = ([str(BIN / "flower-supernode")] if poll_s is None
               else [sys.executable, "-m", "hermes_fed.federation.supernode_launcher"])
    argv = [*command, *security, "--superlink", superlink,
            "--host", LOOPBACK, "--port", str(port), "--isolation", isolation,
            "--node-config", node_config_arg(node_config)]
    proc = spawn(name, argv, env=flower_env(home, {**poll_env(poll_s, supernode=True),
                                                   **(env or {})}),
                 log_path=home / f"{name}.log", port=port, cwd=home)
    try:
        wait_healthy(proc)
    except FederationError:
        proc.stop()
        raise
    return proc


_ACCEPTED = re.compile(r"SuperNode ID: (\d+)")


def refusal(log: str, *, superlink: str, ca_file: Path | None, auth_key: Path | None) -> str:
    """Why a SuperNode ended before the SuperLink accepted it, from its log, in words that
    name who can fix it."""
    from flwr.supercore.error.base import ApiErrorCode

    from hermes_fed.federation.node_keys import public_key_path

    if f"[code: {int(ApiErrorCode.FLEET_NODE_ACTIVATION_FAILED)}]" in log:
        pub = public_key_path(auth_key) if auth_key is not None else Path("node.pub")
        return (f"the coordinator refused this node's key: register {pub} with `hermes-fed "
                "coordinator register-node` (the coordinator's operator runs it with this "
                "public key), or stop the other SuperNode that is online with the same key")
    if f"[code: {int(ApiErrorCode.FLEET_SUPERNODE_REGISTRATION_DISABLED)}]" in log:
        return ("the coordinator accepts only registered nodes (node authentication): make a "
                "key pair on this node with `hermes-fed node keygen DIR`, have DIR/node.pub "
                "registered with `hermes-fed coordinator register-node`, and pass --auth-key "
                "DIR/node.key")
    if "CERTIFICATE_VERIFY_FAILED" in log:
        return (f"the coordinator's TLS certificate at {superlink} is not signed by "
                f"{ca_file}: get the coordinator's ca.pem from its operator")
    if "WRONG_VERSION_NUMBER" in log or "record layer failure" in log:
        return (f"TLS does not match at {superlink}: the coordinator serves TLS only with "
                "--certs; pass --ca exactly when it does")
    errors = [line for line in log.splitlines() if "ERROR" in line or "[code:" in line]
    return ("the SuperNode ended before the coordinator accepted it"
            + (": " + " / ".join(errors[-3:]) if errors else ""))


def wait_accepted(proc: FlowerProcess, *, superlink: str, ca_file: Path | None = None,
                  auth_key: Path | None = None, timeout: float = 120.0,
                  interval: float = 0.2) -> int:
    """Wait until the SuperLink has accepted the SuperNode; its node id.

    The signal is Flower's own: the SuperNode logs ``SuperNode ID: <id>`` right after the
    SuperLink answered its ``ActivateNode`` (flwr 1.42, ``start_client_internal``); a
    refused node exits instead (code 305, the Fleet API's error code in its log).

    Raises
    ------
    FederationError
        When the SuperNode exits first (saying why, see :func:`refusal`) or ``timeout``
        passes (the SuperNode is stopped); ``timeout <= 0`` waits as long as it lives (a
        node started before its coordinator keeps retrying).
    """
    started = time.monotonic()
    while True:
        log = proc.log_since_start()
        found = _ACCEPTED.search(log)
        if found:
            return int(found.group(1))
        if not proc.alive():
            why = refusal(proc.log_since_start(), superlink=superlink, ca_file=ca_file,
                          auth_key=auth_key)
            proc.stop()
            raise FederationError(f"{why} (SuperNode exit {proc.popen.returncode}; log "
                                  f"{proc.log_path})")
        if 0 < timeout < time.monotonic() - started:
            proc.stop()
            raise FederationError(f"the coordinator at {superlink} did not accept this node "
                                  f"within {timeout:.0f} s: is it serving there? (log "
                                  f"{proc.log_path})")
        time.sleep(interval)
