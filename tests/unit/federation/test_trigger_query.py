"""``query.trigger`` through the real ClientApp and egress guard, on a real SQLite log: the
node's AutoTrigger at the coordinator's time, counts under k_min suppressed, and the reply
read back by the coordinator's :class:`TriggerReport`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from coordinator.deploy.wire_capture import find_canaries
from hermes_fed.events import new_event, utcnow
from hermes_fed.events.training import TrainingRunCompleted
from hermes_fed.federation import delivery
from hermes_fed.federation import messages as wire
from hermes_fed.store import open_store
from tenant_node.flower.client_app import app
from tests.integration.federation_data import TenantData, seed_tenant_store

pytestmark = pytest.mark.sql  # the quality read model lives in the log's database
SESSIONS = 30  # seed_tenant_store: every third session accepted -> 10 high quality (0.9)


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1


@pytest.fixture
def tenant(tmp_path: Path) -> TenantData:
    return seed_tenant_store(tmp_path, "acme", SESSIONS)


def _ask(tenant: TenantData, tmp_path: Path, *, k_min: int, trigger: str = "",
         days_later: float = 0.0) -> Message:
    toml = tmp_path / "quality.toml"
    toml.write_text(f"[quality.trigger]\n{trigger}\n")
    context = Context(run_id=1, node_id=1, state=RecordDict(), run_config={}, node_config={
        "tenant-id": tenant.tenant, "store": tenant.store_url, "base-model": "/nonexistent",
        "k-min": k_min, "quality-config": str(toml)})
    now = utcnow() + timedelta(days=days_later, seconds=1)
    query = delivery.TriggerQuery(int(now.timestamp() * 1_000_000))
    request = Message(RecordDict({wire.CONFIG: query.to_record()}), dst_node_id=1,
                      message_type=wire.QUERY_TRIGGER)
    return app(message=request, context=context)


def _metrics(reply: Message) -> dict[str, float]:
    metrics = wire.reply_metrics(reply)
    assert metrics is not None
    return metrics


def test_enough_good_new_data_says_train_with_counts_and_rate(
        tenant: TenantData, tmp_path: Path) -> None:
    # Execute: 30 new, 10 of them high quality; volume needs 30 at a rate of 0.3
    reply = _ask(tenant, tmp_path, k_min=5, trigger="min_new = 30\nhigh_quality_rate = 0.3")

    # Assert
    report = delivery.TriggerReport.from_reply(reply)
    assert report == delivery.TriggerReport("acme", True, "volume", new_scored=30,
                                            new_high_quality=10, high_quality_rate=10 / 30)
    assert set(reply.content) == {wire.METRICS, wire.VERSIONS}
    assert _metrics(reply)[wire.SUPPRESSED_CELLS] == 0
    assert find_canaries(b"".join(str(v).encode() for v in reply.content.values()),
                         tenant.canaries) == []


def test_a_count_under_k_min_is_left_out_with_the_rate_that_would_reveal_it(
        tenant: TenantData, tmp_path: Path) -> None:
    # Execute: k_min 20: 30 scored may leave, 10 high quality may not (default volume 500)
    reply = _ask(tenant, tmp_path, k_min=20)

    # Assert
    metrics = _metrics(reply)
    assert metrics[delivery.COUNT_NEW_SCORED] == 30
    assert delivery.COUNT_NEW_HIGH_QUALITY not in metrics
    assert delivery.RATE_HIGH_QUALITY not in metrics  # 30 x rate would be the 10
    assert metrics[wire.SUPPRESSED_CELLS] == 1
    assert delivery.TriggerReport.from_reply(reply) == delivery.TriggerReport(
        "acme", False, "wait", new_scored=30)


def test_both_counts_under_k_min_are_suppressed(tenant: TenantData, tmp_path: Path) -> None:
    reply = _ask(tenant, tmp_path, k_min=50)

    metrics = _metrics(reply)
    assert metrics[wire.SUPPRESSED_CELLS] == 2
    assert set(metrics) == {delivery.TRIGGER_TRAIN, wire.SUPPRESSED_CELLS}


def test_a_recent_run_says_min_gap_with_the_days_since_it(
        tenant: TenantData, tmp_path: Path) -> None:
    # Prepare: a completed local run now; the coordinator asks one day later
    store = open_store(tenant.store_url, tenant.tenant)
    try:
        store.append([new_event(TrainingRunCompleted(  # type: ignore[call-arg]
            run_id="r1", base_model="tiny", parent_version=None, dataset_manifest_sha256="0" * 64,
            n_by_tier={}, metrics={}), stream_id="training-r1")])
    finally:
        store.close()

    # Execute
    soon = _ask(tenant, tmp_path, k_min=5, trigger="min_new = 1\nhigh_quality_rate = 0.0",
                days_later=1.0)

    # Assert: nothing new since the run (a count of 0 is no small cell: it is reported)
    report = delivery.TriggerReport.from_reply(soon)
    assert report is not None
    assert (report.train, report.rule, report.new_scored, report.new_high_quality) == (
        False, "min_gap", 0, 0)
    assert report.days_since_training == pytest.approx(1.0, abs=1e-3)
    assert report.high_quality_rate is None
