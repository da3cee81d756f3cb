"""The autopilot's :class:`~.federation.Federation` over a Flower ``Grid`` (the ServerApp side).

:class:`GridNodes` asks every connected node in one exchange per call: ``query.trigger``
(:class:`~hermes_fed.federation.delivery.TriggerQuery`), ``query.ab_stats`` (offline,
online, version; as :mod:`coordinator.rounds.looks` does) and ``deploy``
(:class:`~hermes_fed.federation.delivery.DeploySpec` plus one ArrayRecord per adapter).
Nodes are named by the tenant their replies name (:class:`TenantNames`).

:func:`serve_call` is the ServerApp's ``autopilot-call`` mode: the ``coordinator
autopilot`` process (:mod:`.flower_federation`) writes a request file, submits a run
whose run config names it, and reads the reply file this writes beside it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from coordinator.logs.abtest import arm_from_dict, arm_to_dict
from coordinator.rounds.exchange import exchange, wait_for_nodes
from coordinator.rounds.looks import BASE_VERSIONS, tenant_arms, tenant_cells, why_missing
from coordinator.rounds.tenants import TenantNames
from hermes_fed.abtest import ArmStats, TenantArms
from hermes_fed.events import to_micros
from hermes_fed.federation import delivery
from hermes_fed.federation import messages as wire
from hermes_fed.federation.cells import AB_PAIRED, AB_VERSION
from hermes_fed.federation.delivery import DeploySpec, TriggerQuery, TriggerReport
from hermes_fed.federation.queries import AbQuery

from .decide import Readiness
from .federation import DeployAck, OnlineStats, PairedStats, VersionStats

if TYPE_CHECKING:
    from coordinator.logs.registry import AdapterRegistry

logger = logging.getLogger(__name__)

CALL_KEY = "autopilot-call"
REQUEST_KEY = "autopilot-request"
NAMES_FILE = "autopilot/tenants.json"
CALLS = ("poll_triggers", "offline_look", "online_look", "version_quality", "deploy")


class GridNodes:
    """Every node connected to ``grid`` (module docstring); ``registry`` for adapters."""

    def __init__(self, grid: Grid, registry: AdapterRegistry, *, timeout: float = 600.0,
                 interval: float = 0.2, min_nodes: int = 1, node_wait: float = 60.0,
                 names_file: Path | None = None) -> None:
        self.grid = grid
        self.registry = registry
        self.timeout = timeout
        self.interval = interval
        self.min_nodes = min_nodes
        self.node_wait = node_wait
        self.names = TenantNames()
        # each autopilot call is its own run: what nodes said they are is kept between runs,
        # so a node whose reply names nobody (Flower's own error) is still named by tenant
        self.names_file = names_file
        if names_file is not None and names_file.is_file():
            for node, tenant in json.loads(names_file.read_text()).items():
                self.names.remember(int(node), str(tenant))

    def _ask(self, message_type: str, contents: Mapping[int, RecordDict]) -> dict[int, Message]:
        msgs = [Message(content, dst_node_id=n, message_type=message_type)
                for n, content in contents.items()]
        replies, _ = exchange(self.grid, msgs, timeout=self.timeout, interval=self.interval)
        self.names.learn_all(replies)
        if self.names_file is not None:
            known = {str(n): self.names.tenant(n) for n in contents if self.names.tenant(n)}
            if known:
                kept = (json.loads(self.names_file.read_text())
                        if self.names_file.is_file() else {})
                self.names_file.parent.mkdir(parents=True, exist_ok=True)
                self.names_file.write_text(json.dumps({**kept, **known}, sort_keys=True))
        return replies

    def _nodes(self) -> list[int]:
        return wait_for_nodes(self.grid, self.min_nodes, self.node_wait, self.interval)

    def poll_triggers(self, now: datetime) -> Readiness:
        nodes = self._nodes()
        query = TriggerQuery(to_micros(now))
        replies = self._ask(wire.QUERY_TRIGGER,
                            {n: RecordDict({wire.CONFIG: query.to_record()}) for n in nodes})
        reports, missing = [], []
        for n in nodes:
            report = TriggerReport.from_reply(replies.get(n))
            if report is None:
                missing.append(f"{self.names.name(n)}: {why_missing(replies.get(n))}")
            else:
                reports.append(report if report.tenant else
                               TriggerReport(self.names.name(n), report.train, report.rule,
                                             report.new_scored, report.new_high_quality,
                                             report.high_quality_rate,
                                             report.days_since_training))
        return Readiness(tuple(reports), tuple(missing))

    def run_rounds(self, parent: str | None, rounds: int) -> list[str]:
        raise NotImplementedError("rounds run as their own ServerApp run (flower_federation)")

    def offline_look(self, query: AbQuery) -> PairedStats:
        nodes = self._nodes()
        candidate = self.registry.load(query.treatment)
        current = None if query.control in BASE_VERSIONS else self.registry.load(query.control)

        def content() -> RecordDict:  # one RecordDict per message: Flower tracks identity
            body = RecordDict({wire.CONFIG: query.to_record(),
                               wire.CANDIDATE: wire.adapter_record(candidate)})
            if current is not None:
                body[wire.CURRENT] = wire.adapter_record(current)
            return body

        replies = self._ask(wire.QUERY_AB_STATS, {n: content() for n in nodes})
        cells, missing = tenant_cells(replies, nodes, self.names, AB_PAIRED)
        return PairedStats(dict(cells), tuple(missing))

    def online_look(self, query: AbQuery) -> OnlineStats:
        nodes = self._nodes()
        replies = self._ask(wire.QUERY_AB_STATS,
                            {n: RecordDict({wire.CONFIG: query.to_record()}) for n in nodes})
        arms, missing = tenant_arms(replies, nodes, self.names)
        return OnlineStats(tuple(arms), tuple(missing))

    def version_quality(self, version: str, since_us: int) -> VersionStats:
        nodes = self._nodes()
        query = AbQuery("version", version=version, since_us=int(since_us))
        replies = self._ask(wire.QUERY_AB_STATS,
                            {n: RecordDict({wire.CONFIG: query.to_record()}) for n in nodes})
        cells, missing = tenant_cells(replies, nodes, self.names, AB_VERSION)
        return VersionStats(sum((arm for _, arm in cells), ArmStats()), len(cells),
                            tuple(missing))

    def deploy(self, spec: DeploySpec,
               tensors: Sequence[Mapping[str, np.ndarray]]) -> list[DeployAck]:
        nodes = self._nodes()

        def content() -> RecordDict:
            body = RecordDict({wire.CONFIG: spec.to_record()})
            for i, state in enumerate(tensors):
                body[delivery.adapter_key(i)] = wire.adapter_record(state)
            return body

        replies = self._ask(wire.DEPLOY, {n: content() for n in nodes})
        acks = []
        for n in nodes:
            reply = replies.get(n)
            applied = wire.reply_version(reply, delivery.APPLIED_PLAN)
            installed = wire.reply_metric(reply, delivery.DEPLOY_INSTALLED)
            acks.append(DeployAck(self.names.name(n), applied, int(installed or 0),
                                  None if applied else why_missing(reply)))
        return acks


# --- the wire between `coordinator autopilot` and the ServerApp (JSON files) --------------
def encode_reply(call: str, value: Any) -> dict[str, Any]:
    if call == "poll_triggers":
        return {"reports": [{"tenant": r.tenant, "train": r.train, "rule": r.rule,
                             "new_scored": r.new_scored, "new_high_quality": r.new_high_quality,
                             "high_quality_rate": r.high_quality_rate,
                             "days_since_training": r.days_since_training}
                            for r in value.reports], "missing": list(value.missing)}
    if call == "offline_look":
        return {"paired": {t: arm_to_dict(a) for t, a in value.paired.items()},
                "missing": list(value.missing)}
    if call == "online_look":
        return {"arms": [{"tenant": a.tenant_id, "control": arm_to_dict(a.control),
                          "treatment": arm_to_dict(a.treatment)} for a in value.arms],
                "missing": list(value.missing)}
    if call == "version_quality":
        return {"total": arm_to_dict(value.total), "tenants": value.tenants,
                "missing": list(value.missing)}
    return {"acks": [{"tenant": a.tenant, "applied_plan": a.applied_plan,
                      "installed": a.installed, "error": a.error} for a in value]}


def decode_reply(call: str, body: Mapping[str, Any]) -> Any:
    if call == "poll_triggers":
        return Readiness(tuple(TriggerReport(**r) for r in body["reports"]),
                         tuple(body["missing"]))
    if call == "offline_look":
        return PairedStats({t: arm_from_dict(a) for t, a in body["paired"].items()},
                           tuple(body["missing"]))
    if call == "online_look":
        return OnlineStats(tuple(TenantArms(a["tenant"], arm_from_dict(a["control"]),
                                            arm_from_dict(a["treatment"]))
                                 for a in body["arms"]), tuple(body["missing"]))
    if call == "version_quality":
        return VersionStats(arm_from_dict(body["total"]), int(body["tenants"]),
                            tuple(body["missing"]))
    return [DeployAck(**a) for a in body["acks"]]


def reply_path(request: Path) -> Path:
    return request.with_suffix(".reply.json")


def serve_call(grid: Grid, run_config: Mapping[str, Any]) -> None:
    """The ServerApp's ``autopilot-call`` mode: do the request file's call, write the reply."""
    from coordinator.logs.registry import AdapterRegistry

    call = str(run_config[CALL_KEY])
    request = Path(str(run_config[REQUEST_KEY]))
    body = json.loads(request.read_text())
    with AdapterRegistry.open(Path(body["coordinator_dir"])) as registry:
        root = Path(body["coordinator_dir"])
        nodes = GridNodes(grid, registry, timeout=float(body.get("timeout", 600.0)),
                          min_nodes=int(body.get("min_nodes", 1)),
                          node_wait=float(body.get("node_wait", 60.0)),
                          names_file=root / NAMES_FILE)
        args = body["args"]
        value: Any
        if call == "poll_triggers":
            value = nodes.poll_triggers(datetime.fromisoformat(args["now"]))
        elif call in ("offline_look", "online_look"):
            value = getattr(nodes, call)(AbQuery.from_record(args["query"]))
        elif call == "version_quality":
            value = nodes.version_quality(str(args["version"]), int(args["since_us"]))
        elif call == "deploy":
            spec = DeploySpec.from_record(args["spec"])
            value = nodes.deploy(spec, [registry.load(a.version) for a in spec.adapters])
        else:
            raise ValueError(f"{CALL_KEY} must be one of {CALLS}, got {call!r}")
    reply_path(request).write_text(json.dumps(encode_reply(call, value)) + "\n")
    logger.info("action=autopilot_call call=%s status=done", call)
