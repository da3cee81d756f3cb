"""A federated round leaves its record in the node's own log (issue 20 item 1, issue 21
item 12): through the real ClientApp ``train`` handler on a tiny peft model and a real
SQLite log, ``FederatedRoundTrained`` is recorded; the node's ``query.trigger`` then
counts from the round (min_gap, then wait: not volume with every trajectory new); the
next round's selection still offers the same trajectories (nothing marked used, even
with ``exclude-used``); ``node status`` names the round as the last training; and a
round whose record cannot be written replies an error, not an update."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from coordinator.rounds.config import RoundsConfig
from hermes_fed.cli import main
from hermes_fed.errors import EgressError
from hermes_fed.events import StoredEvent, utcnow
from hermes_fed.federation import delivery
from hermes_fed.federation import messages as wire
from hermes_fed.federation.node_settings import NodeSettings
from hermes_fed.federation.reasons import parse_reason
from hermes_fed.federation.settings import RoundSettings
from hermes_fed.store import Keyring, open_store
from tenant_node.flower.client_app import app
from tenant_node.flower.local_round import load_local_data
from tests.integration.federation_data import seed_tenant_store

pytestmark = pytest.mark.sql  # the quality read model lives in the log's database
FLOWER_RUN = 2**63 + 7  # Flower run ids are uint64
# 60 sessions, every third accepted: 20 of 60 high quality; volume at 30 and a rate of 0.3
TRIGGER = "[quality.trigger]\nmin_new = 30\nhigh_quality_rate = 0.3\n"


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = FLOWER_RUN, 1, 1


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hermes_fed.training.tiny_model import init_tiny_model

    return init_tiny_model(tmp_path_factory.mktemp("model") / "tiny", "1m")


class Node:
    """A node directory: node.toml ([quality.trigger]), acme/events.db of 60 sessions and
    its key ring; the node config a SuperNode would get (exclude-used on)."""

    def __init__(self, root: Path, model: Path) -> None:
        keyring = Keyring.generate("acme")
        (root / "acme").mkdir(parents=True)
        keyring.save(root / "acme" / "keyring.json")
        self.keyring = keyring
        self.data = seed_tenant_store(root, "acme", 60, keyring=keyring)
        self.db = root / "acme" / "events.db"
        self.toml = root / "node.toml"
        self.toml.write_text(f'tenant_id = "acme"\ntoken = "node-token-0123456789abcdef"\n'
                             f'metrics_port = 0\ndata_dir = "{root / "acme"}"\n{TRIGGER}')
        self.node_config: dict[str, str | int | float | bool] = {
            "tenant-id": "acme", "store": self.data.store_url, "base-model": str(model),
            "keyring": str(root / "acme" / "keyring.json"), "heldout-fraction": 0.4,
            "quality-config": str(self.toml), "exclude-used": True}

    def context(self) -> Context:
        return Context(run_id=1, node_id=1, state=RecordDict(), run_config={},
                       node_config=dict(self.node_config))

    def events(self, kind: str) -> list[StoredEvent]:
        store = open_store(self.data.store_url, "acme", keyring=self.keyring)
        try:
            return [e for e in store.read() if e.type == kind]
        finally:
            store.close()

    def head(self) -> int:
        store = open_store(self.data.store_url, "acme", keyring=self.keyring)
        try:
            return store.head()
        finally:
            store.close()

    def trigger(self, days_later: float = 0.0) -> delivery.TriggerReport:
        now = utcnow() + timedelta(days=days_later, seconds=1)
        query = delivery.TriggerQuery(int(now.timestamp() * 1_000_000))
        reply = app(message=Message(RecordDict({wire.CONFIG: query.to_record()}),
                                    dst_node_id=1, message_type=wire.QUERY_TRIGGER),
                    context=self.context())
        report = delivery.TriggerReport.from_reply(reply)
        assert report is not None
        return report


@pytest.fixture(scope="module")
def global_adapter(tiny_model: Path) -> dict[str, np.ndarray]:
    """The global adapter the coordinator sends (a fresh LoRA of the tiny model)."""
    from hermes_fed.training.adapter import adapter_state, build_peft_model, load_base_model

    base, _ = load_base_model(tiny_model)
    return adapter_state(build_peft_model(base, _rounds(tiny_model).settings.training_config(
        "exact")))


def _rounds(model: Path) -> RoundsConfig:
    return RoundsConfig(coordinator_dir="-", base_model=str(model), mode="exact",
                        settings=RoundSettings(local_steps=1, batch_size=4))


def _round(model: Path, adapter: dict[str, np.ndarray], round_: int = 1) -> Message:
    import torch

    torch.set_num_threads(1)
    return Message(RecordDict({
        "adapter": ArrayRecord({k: Array(v) for k, v in adapter.items()}),
        "config": _rounds(model).spec(round_, "v1-abc").to_record()}), dst_node_id=1,
        message_type="train")


def test_a_round_is_recorded_and_the_trigger_counts_from_it(
        tmp_path: Path, tiny_model: Path, global_adapter: dict[str, np.ndarray],
        capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a node whose trigger says train (volume: all 60 new)
    node = Node(tmp_path, tiny_model)
    before = node.trigger()
    head = node.head()
    offered = load_local_data(NodeSettings.from_node_config(node.node_config))

    # Execute: round 1 of the coordinator's cycle through the ClientApp
    reply = app(message=_round(tiny_model, global_adapter), context=node.context())

    # Assert: the reply carries the update, the node's log the round
    assert not reply.has_error()
    metrics = reply.content.metric_records["metrics"]
    manifest = reply.content.config_records["versions"]["dataset-manifest"]
    [event] = node.events("FederatedRoundTrained")
    tiers = Counter(tier for _, _, tier in offered.train)
    assert dict(event.data) == {
        "flower_run_id": FLOWER_RUN, "round": 1, "parent_version": "v1-abc",
        "dataset_manifest_sha256": manifest, "num_examples": metrics["num-examples"],
        "n_by_tier": dict(tiers), "log_position": head}
    assert event.metadata["actor"] == "node.federated"
    assert (before.train, before.rule, before.new_scored) == (True, "volume", 60)
    # the coordinator asks again at once, and after min_gap_days (3): nothing new since
    soon, later = node.trigger(), node.trigger(days_later=4)
    assert (soon.train, soon.rule, soon.new_scored) == (False, "min_gap", 0)
    assert soon.days_since_training == pytest.approx(0.0, abs=1e-3)
    assert (later.train, later.rule, later.new_scored) == (False, "wait", 0)
    # the next round is offered the same selection: nothing marked used (exclude-used on)
    again = load_local_data(NodeSettings.from_node_config(node.node_config))
    assert again.manifest_sha256 == offered.manifest_sha256 == manifest
    assert [t["trajectory_id"] for t, _, _ in again.train] == [
        t["trajectory_id"] for t, _, _ in offered.train]
    # node status names the round as the last training
    assert main(["node", "status", "--config", str(node.toml), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert main(["node", "status", "--config", str(node.toml)]) == 0
    text = capsys.readouterr().out
    assert body["last_training"]["run_id"] == f"federated-{FLOWER_RUN}-1"
    assert body["last_training"]["kind"] == "federated"
    assert body["trigger"]["rule"] == "min_gap"
    assert f"last training: federated federated-{FLOWER_RUN}-1 at " in text


def test_a_round_whose_record_fails_replies_an_error_not_an_update(
        tmp_path: Path, tiny_model: Path, global_adapter: dict[str, np.ndarray]) -> None:
    # Prepare: the node's database refuses the round's record (a real SQLite failure)
    node = Node(tmp_path, tiny_model)
    with sqlite3.connect(node.db) as conn:
        conn.execute("CREATE TRIGGER refuse_round BEFORE INSERT ON events "
                     "WHEN NEW.type = 'FederatedRoundTrained' "
                     "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")

    # Execute
    with pytest.raises(EgressError) as info:
        app(message=_round(tiny_model, global_adapter), context=node.context())

    # Assert: a reason code, no update; the log shows no round and the trigger says so
    assert parse_reason(str(info.value)) == "store-unavailable", str(info.value)
    assert node.events("FederatedRoundTrained") == []
    report = node.trigger()
    assert (report.train, report.rule, report.new_scored) == (True, "volume", 60)


def test_a_secagg_fit_records_its_round_too(
        tmp_path: Path, tiny_model: Path, global_adapter: dict[str, np.ndarray]) -> None:
    from flwr.common import FitIns, ndarrays_to_parameters
    from flwr.compat.common import recorddict_compat as compat

    from tenant_node.flower.client_app import _secagg_fit
    from tenant_node.flower.egress import EgressPolicy

    # Prepare: the legacy FitIns secaggplus_mod hands the handler at "collect masked
    # vectors" (the mod itself, and its masking, are the slow integration tests')
    node = Node(tmp_path, tiny_model)
    names = sorted(global_adapter)
    config: dict[str, Any] = {**_rounds(tiny_model).spec(2, "v1-abc").to_record(),
                              "adapter-keys": ",".join(names)}
    fitins = FitIns(ndarrays_to_parameters([global_adapter[k] for k in names]), config)
    request = Message(compat.fitins_to_recorddict(fitins, keep_input=True), dst_node_id=1,
                      message_type="train")
    settings = NodeSettings.from_node_config(node.node_config)

    # Execute
    reply = _secagg_fit(request, settings, EgressPolicy(k_min=settings.k_min), 0.0)

    # Assert
    assert not reply.has_error()
    [event] = node.events("FederatedRoundTrained")
    assert (event.data["flower_run_id"], event.data["round"]) == (FLOWER_RUN, 2)
    assert event.data["num_examples"] == compat.recorddict_to_fitres(
        reply.content, keep_input=True).num_examples
    assert node.trigger().rule == "min_gap"


def test_a_redelivered_round_is_recorded_once(tmp_path: Path) -> None:
    from hermes_fed.federation.round_spec import RoundSpec
    from tenant_node.flower.local_round import LocalUpdate, record_round

    # Prepare: what a round's handler has once it trained (no training needed here)
    node = Node(tmp_path, Path("/nonexistent"))  # no model: nothing is trained
    settings = NodeSettings.from_node_config(node.node_config)
    data = load_local_data(settings)
    update = LocalUpdate(adapter={}, num_examples=len(data.train), metrics={})
    spec = RoundSpec(round=3, mode="exact", parent_version="v2-abc")

    # Execute: Flower delivers round 3 twice (the node crashed before its reply left)
    first = record_round(settings, spec, data, update, FLOWER_RUN)
    again = record_round(settings, spec, data, update, FLOWER_RUN)
    other_run = record_round(settings, spec, data, update, 5)

    # Assert: one record per (run, round); the store's append is idempotent by event id
    assert first == again < other_run
    assert [(e.data["flower_run_id"], e.data["round"]) for e in
            node.events("FederatedRoundTrained")] == [(FLOWER_RUN, 3), (5, 3)]
