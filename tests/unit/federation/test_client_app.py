"""The ClientApp in-process (no SuperNode): handlers, egress mod, replies on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.task_identity import TaskIdentity

from coordinator.deploy.wire_capture import find_canaries
from coordinator.rounds.config import RoundsConfig
from hermes_fed.errors import EgressError
from hermes_fed.federation.settings import RoundSettings
from tenant_node.flower.client_app import app
from tests.integration.federation_data import TenantData, seed_tenant_store


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> TenantData:
    return seed_tenant_store(tmp_path_factory.mktemp("tenant"), "acme", 60)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hermes_fed.training.tiny_model import init_tiny_model

    return init_tiny_model(tmp_path_factory.mktemp("model") / "tiny", "1m")


def _context(tenant: TenantData, model: Path | str = "/nonexistent") -> Context:
    node_config = {"tenant-id": tenant.tenant, "store": tenant.store_url,
                   "base-model": str(model), "heldout-fraction": 0.4}
    return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(),
                   run_config={})


def _wire(message: Message) -> bytes:
    return b"".join(o.deflate() for o in get_all_nested_objects(message).values())


def test_status_query_replies_counts_only(tenant: TenantData) -> None:
    # Execute
    reply = app(message=Message(RecordDict(), dst_node_id=1, message_type="query.status"),
                context=_context(tenant))
    # Assert
    assert not reply.has_error()
    metrics = reply.content.metric_records["metrics"]
    assert metrics["count.events"] >= 60 * 2
    assert metrics["count.train"] + metrics["count.heldout"] == 60
    assert set(reply.content) == {"metrics", "versions"}
    assert dict(reply.content.config_records["versions"]) == {"tenant-id": tenant.tenant}
    assert find_canaries(_wire(reply), tenant.canaries) == []


def test_handler_failure_leaves_as_an_error_without_text(tenant: TenantData) -> None:
    # The store URL of this context points nowhere usable: the handler raises inside.
    context = _context(tenant)
    context.node_config["store"] = f"sqlite:////nonexistent/{tenant.canaries[0]}/x.db"
    with pytest.raises(EgressError) as info:
        app(message=Message(RecordDict(), dst_node_id=1, message_type="query.status"),
            context=context)
    assert str(info.value) == ("query.status failed: reason=store-unavailable tenant=acme "
                               "(OperationalError)")
    assert info.value.__cause__ is None and info.value.__context__ is not None
    assert find_canaries(str(info.value).encode(), tenant.canaries) == []


@pytest.mark.parametrize("mode", ["frozen-a", "exact"])
def test_train_reply_on_real_data_carries_only_allowed_records(
        tenant: TenantData, tiny_model: Path, mode: str) -> None:
    import torch

    from hermes_fed.training.adapter import adapter_state, build_peft_model, load_base_model

    torch.set_num_threads(1)
    # Prepare: the global adapter the coordinator would send
    cfg = RoundsConfig(coordinator_dir="-", base_model=str(tiny_model), mode=mode,
                       settings=RoundSettings(local_steps=1, batch_size=4))
    base, _ = load_base_model(tiny_model)
    global_adapter = adapter_state(build_peft_model(base, cfg.settings.training_config(mode)))
    request = Message(RecordDict({
        "adapter": ArrayRecord({k: Array(v) for k, v in global_adapter.items()}),
        "config": cfg.spec(1, "v1-abc").to_record()}), dst_node_id=1, message_type="train")
    # Execute
    reply = app(message=request, context=_context(tenant, tiny_model))
    # Assert
    assert not reply.has_error()
    assert set(reply.content) <= {"adapter", "metrics", "versions"}
    sent = reply.content.array_records["adapter"]
    has_a = any(".lora_A." in k for k in sent)
    assert has_a is (mode != "frozen-a")  # frozen-a ships B only
    assert all(np.isfinite(a.numpy()).all() for a in sent.values())
    metrics = reply.content.metric_records["metrics"]
    assert metrics["num-examples"] >= 20
    assert "heldout-before.adapter.n" in metrics
    assert reply.content.config_records["versions"]["parent-version"] == "v1-abc"
    assert len(str(reply.content.config_records["versions"]["dataset-manifest"])) == 64
    assert find_canaries(_wire(reply), tenant.canaries) == []
    assert reply.content.config_records["versions"]["tenant-id"] == tenant.tenant


def test_evaluate_reply_names_its_tenant(tenant: TenantData, tiny_model: Path) -> None:
    from hermes_fed.training.adapter import adapter_state, build_peft_model, load_base_model

    # Prepare: the coordinator's evaluate message with a fresh adapter
    cfg = RoundsConfig(coordinator_dir="-", base_model=str(tiny_model), mode="exact")
    base, _ = load_base_model(tiny_model)
    adapter = adapter_state(build_peft_model(base, cfg.settings.training_config("exact")))
    request = Message(RecordDict({
        "adapter": ArrayRecord({k: Array(v) for k, v in adapter.items()}),
        "config": cfg.spec(1, "v2-abc").to_record()}), dst_node_id=1, message_type="evaluate")
    # Execute
    reply = app(message=request, context=_context(tenant, tiny_model))
    # Assert: held-out cells, the version scored, and the tenant (reports name it)
    assert not reply.has_error()
    assert dict(reply.content.config_records["versions"]) == {"adapter-version": "v2-abc",
                                                             "tenant-id": tenant.tenant}
    assert reply.content.metric_records["metrics"]["heldout.adapter.n"] >= 20
