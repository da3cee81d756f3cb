"""A whole federation on loopback: one SuperLink, N SuperNodes, optional byte capture.

Used by ``hermes-fed coordinator serve``, the deployment integration test and the bench.
With ``capture=True`` the SuperNodes reach the SuperLink through a
:class:`coordinator.deploy.wire_capture.CaptureRelay`, so every byte a node sends can be audited.
"""

from __future__ import annotations

import json
import logging
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator.deploy.superlink import RunOutcome, run_app, start_superlink, write_connection
from coordinator.deploy.wire_capture import CaptureRelay
from coordinator.rounds.config import CONFIG_ENV
from hermes_fed.errors import FederationError
from hermes_fed.federation.node_settings import NodeSettings
from hermes_fed.federation.processes import LOOPBACK, FlowerProcess, flower_env, spawn, start_supernode

logger = logging.getLogger(__name__)

CONNECTION = "hermes-local"
FAST_POLL_S = 0.2
"""How often a local federation's Flower processes poll (see ``LocalFederation``)."""
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One tenant node: its ``--node-config`` (tenant-id, store, base-model, ...)."""

    tenant_id: str
    store: str
    base_model: str
    extra: Mapping[str, str | int | float] = field(default_factory=dict)

    def node_config(self) -> dict[str, str | int | float]:
        """The ``--node-config``, checked against the contract the ClientApp reads."""
        return NodeSettings.from_node_config({
            "tenant-id": self.tenant_id, "store": self.store, "base-model": self.base_model,
            **self.extra}).to_node_config()


def declared_run_config(app_dir: Path) -> frozenset[str]:
    """The keys of ``[tool.flwr.app.config]`` in the app's ``pyproject.toml``."""
    with (app_dir / "pyproject.toml").open("rb") as fh:
        body = tomllib.load(fh)
    return frozenset(body.get("tool", {}).get("flwr", {}).get("app", {}).get("config", {}))


def submit(cli_home: Path, config_path: Path, run_config: Mapping[str, str | int | float], *,
           app_dir: Path = REPO_ROOT, timeout: float = 600.0) -> RunOutcome:
    """Write the coordinator settings, ``flwr run`` the app, check Flower's status.

    Keys the app's ``[tool.flwr.app.config]`` declares go through ``flwr run -c``; the
    others go to ``config_path`` (the file the SuperLink's environment names).
    """
    declared = declared_run_config(app_dir)
    config_path.write_text(json.dumps(
        {k: v for k, v in run_config.items() if k not in declared}, indent=2) + "\n")
    return run_app(app_dir, cli_home, CONNECTION,
                   run_config={k: v for k, v in run_config.items() if k in declared},
                   timeout=timeout)


def read_run_report(coordinator_dir: Path, run_id: str) -> dict[str, Any]:
    """The ServerApp's own result for ``run_id``; must say ``completed``."""
    path = coordinator_dir / "reports" / f"run-{run_id}.json"
    try:
        body: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FederationError(f"run {run_id} left no readable report at {path}: {exc}") from None
    if body.get("status") != "completed":
        raise FederationError(f"run {run_id} report says {body.get('status')!r}: "
                              f"{body.get('error', '')}")
    return body


class LocalFederation:
    """Start/stop a SuperLink and SuperNodes under ``root`` (each with its own FLWR_HOME).

    ``poll_s``: every Flower process of the federation polls every ``poll_s`` seconds
    (SuperNodes through :mod:`hermes_fed.federation.supernode_launcher`, SuperExecs through
    Flower's ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL``) instead of Flower's fixed 3 s and 1 s,
    which are most of an exchange's cost on loopback (``bench/flower/exchange.py``);
    ``None`` keeps Flower's defaults.
    """

    def __init__(self, root: Path, *, isolation: str = "subprocess", capture: bool = False,
                 node_env: Mapping[str, str] | None = None,
                 superlink_env: Mapping[str, str] | None = None,
                 poll_s: float | None = FAST_POLL_S) -> None:
        self.root = root
        self.poll_s = poll_s
        self.isolation = isolation
        self.capture = capture
        self.node_env = dict(node_env or {})
        self.superlink_env = dict(superlink_env or {})
        self.superlink: FlowerProcess | None = None
        self.relay: CaptureRelay | None = None
        self.nodes: dict[str, FlowerProcess] = {}
        self.workers: dict[str, FlowerProcess] = {}
        self.cli_home = root / "cli"

    def __enter__(self) -> LocalFederation:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def config_path(self) -> Path:
        """The coordinator's settings file, named to the ServerApp by its environment."""
        return self.root / "superlink" / "coordinator.json"

    def start(self) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            self.config_path.write_text("{}\n")
        self.superlink = start_superlink(self.root / "superlink", persistent=False,
                                         env={CONFIG_ENV: str(self.config_path),
                                              **self.superlink_env}, poll_s=self.poll_s)
        write_connection(self.cli_home, CONNECTION, self.superlink.address)
        if self.capture:
            self.relay = CaptureRelay(self.superlink.port).__enter__()

    @property
    def fleet_address(self) -> str:
        """Where SuperNodes connect: the relay when capturing, else the SuperLink."""
        if self.relay is not None:
            return f"{LOOPBACK}:{self.relay.port}"
        if self.superlink is None:
            raise RuntimeError("the federation is not started")
        return self.superlink.address

    def add_node(self, spec: NodeSpec) -> FlowerProcess:
        proc = start_supernode(self.root / "nodes" / spec.tenant_id, self.fleet_address,
                               spec.node_config(), isolation=self.isolation,
                               name=f"supernode-{spec.tenant_id}", env=self.node_env,
                               poll_s=self.poll_s)
        self.nodes[spec.tenant_id] = proc
        if self.isolation == "process":
            # no flower-superexec in this mode: our long-lived ClientApp worker takes tasks
            home = self.root / "nodes" / spec.tenant_id
            self.workers[spec.tenant_id] = spawn(
                f"clientapp-{spec.tenant_id}",
                [sys.executable, "-m", "tenant_node.flower.warm_clientapp",
                 "--runtime-api-address", proc.address,
                 *(["--poll-interval", f"{self.poll_s:g}"] if self.poll_s is not None else [])],
                env=flower_env(home, self.node_env), log_path=home / "clientapp.log",
                port=proc.port, cwd=REPO_ROOT)
        return proc

    def run(self, run_config: Mapping[str, str | int | float], *,
            app_dir: Path = REPO_ROOT, timeout: float = 600.0) -> RunOutcome:
        """``flwr run`` the hermes-fed app and check it completed (see ``run_app``).

        Keys the app's ``[tool.flwr.app.config]`` declares go through ``flwr run -c``;
        the others are written to the coordinator's settings file first.
        """
        return submit(self.cli_home, self.config_path, run_config, app_dir=app_dir,
                      timeout=timeout)

    def stop(self) -> None:
        for proc in [*self.workers.values(), *self.nodes.values()]:
            proc.stop()
        self.workers.clear()
        self.nodes.clear()
        if self.relay is not None:
            self.relay.close()
        if self.superlink is not None:
            self.superlink.stop()
            self.superlink = None
