"""The autopilot's :class:`~.federation.Federation` through the serving coordinator.

``coordinator autopilot --dir D`` runs beside ``coordinator serve --dir D``. Each call is
one short Flower run of the hermes-fed ServerApp, submitted as ``round run`` and ``ab look``
are (:func:`coordinator.deploy.local_federation.submit`): the call's arguments go to a
request file under ``D/autopilot/calls/``, the run config names it (``autopilot-call``,
``autopilot-request``), and the ServerApp (:func:`.grid_federation.serve_call`) writes the
reply beside it. Rounds are ordinary round runs starting from the cycle's parent
(``parent-version``), without their own A/B looks (the autopilot looks for itself).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from hermes_fed.errors import FederationError
from hermes_fed.federation.delivery import DeploySpec
from hermes_fed.federation.queries import AbQuery

from .config import AutopilotConfig
from .decide import Readiness
from .federation import DeployAck, OnlineStats, PairedStats, VersionStats
from .grid_federation import CALL_KEY, REQUEST_KEY, decode_reply, reply_path

CALLS_DIR = "autopilot/calls"


class ServingFederation:
    """The nodes of the coordinator serving from ``root`` (module docstring)."""

    def __init__(self, root: Path, config: AutopilotConfig) -> None:
        self.root = root
        self.config = config

    def _serving(self) -> dict[str, Any]:
        try:
            info: dict[str, Any] = json.loads((self.root / "serve.json").read_text())
        except OSError:
            raise FederationError(f"no coordinator is serving from {self.root}: start "
                                  "`hermes-fed coordinator serve --dir` first") from None
        return info

    def _submit(self, run_config: Mapping[str, str | int | float]) -> str:
        from coordinator.deploy.local_federation import read_run_report, submit

        info = self._serving()
        outcome = submit(Path(info["cli_home"]), Path(info["config"]), run_config,
                         timeout=self.config.node_timeout_seconds + 120.0)
        if CALL_KEY not in run_config:
            read_run_report(self.root, outcome.run_id)
        return outcome.run_id

    def _call(self, call: str, args: Mapping[str, Any]) -> Any:
        calls = self.root / CALLS_DIR
        calls.mkdir(parents=True, exist_ok=True)
        request = calls / f"{call}-{uuid.uuid4().hex[:12]}.json"
        request.write_text(json.dumps({
            "coordinator_dir": str(self.root), "args": dict(args),
            "timeout": self.config.node_timeout_seconds, "min_nodes": 1}) + "\n")
        try:
            self._submit({"coordinator-dir": str(self.root), "base-model": "unused",
                          CALL_KEY: call, REQUEST_KEY: str(request)})
            reply = reply_path(request)
            try:
                body = json.loads(reply.read_text())
            except (OSError, ValueError) as exc:
                raise FederationError(f"autopilot call {call}: the ServerApp left no reply "
                                      f"at {reply}: {exc}") from None
            return decode_reply(call, body)
        finally:
            request.unlink(missing_ok=True)
            reply_path(request).unlink(missing_ok=True)
            # the settings file now names this call: a later bare `flwr run` must not
            # repeat it (round run and the next call write their own settings first)
            Path(self._serving()["config"]).write_text("{}\n")

    def poll_triggers(self, now: datetime) -> Readiness:
        value: Readiness = self._call("poll_triggers", {"now": now.isoformat()})
        return value

    def run_rounds(self, parent: str | None, rounds: int) -> list[str]:
        from coordinator.logs.registry import AdapterRegistry

        if not self.config.base_model:
            raise FederationError("[autopilot] base_model is not set: the rounds need the "
                                  "base-model dir the nodes share")
        with AdapterRegistry.open(self.root) as registry:
            before = {v.version for v in registry.versions()}
        run_config: dict[str, str | int | float] = {
            **self.config.round_config,
            "coordinator-dir": str(self.root),
            "base-model": str(Path(self.config.base_model).resolve()),
            "rounds": rounds, "mode": self.config.mode, "ab-looks": 0}
        if parent:
            run_config["parent-version"] = parent
        self._submit(run_config)
        with AdapterRegistry.open(self.root) as registry:
            return [v.version for v in registry.versions() if v.version not in before]

    def offline_look(self, query: AbQuery) -> PairedStats:
        value: PairedStats = self._call("offline_look", {"query": dict(query.to_record())})
        return value

    def online_look(self, query: AbQuery) -> OnlineStats:
        value: OnlineStats = self._call("online_look", {"query": dict(query.to_record())})
        return value

    def version_quality(self, version: str, since_us: int) -> VersionStats:
        value: VersionStats = self._call("version_quality",
                                         {"version": version, "since_us": int(since_us)})
        return value

    def deploy(self, spec: DeploySpec,
               tensors: Sequence[Mapping[str, np.ndarray]]) -> list[DeployAck]:
        # the ServerApp loads the same tensors from the registry (checked against sha256)
        value: list[DeployAck] = self._call("deploy", {"spec": dict(spec.to_record())})
        return value
