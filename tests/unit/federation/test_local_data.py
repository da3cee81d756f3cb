"""The federated round's local data: quality selection leaves broken tool use out."""

from __future__ import annotations

import json
import random
from pathlib import Path

from examples.flywheel.tasks import FAMILIES, golden_trajectory
from hermes_fed.events import NewEvent
from hermes_fed.federation.node_settings import NodeSettings
from hermes_fed.store import open_store
from tenant_node.flower.local_round import load_local_data


def _session(i: int, trajectory: dict, accepted: bool) -> list[NewEvent]:
    stream = f"s-{i}"
    tid = trajectory["trajectory_id"]
    events = [NewEvent(stream, "SessionStarted", {"user_ref": f"u{i % 5}", "model_version": "base"}),
              NewEvent(stream, "TrajectoryRecorded", trajectory)]
    if accepted:
        events.append(NewEvent(stream, "OutputAccepted", {"trajectory_id": tid}))
    return [*events, NewEvent(stream, "SessionEnded", {"reason": "closed"})]


def _broken(i: int) -> dict:
    """The base model's typical failure: a made-up tool, its error, a confident answer."""
    good = golden_trajectory(FAMILIES["arithmetic"].generate(random.Random(i), "t"), f"bad-{i}")
    messages = [
        *good["messages"][:2],
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": "call_1", "name": "send_user", "arguments": {"count": "2007"}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "send_user",
         "content": json.dumps({"error": "unknown tool 'send_user'"})},
        {"role": "assistant", "content": "The user is 2007."}]
    return {**good, "messages": messages, "final_response": "The user is 2007."}


def _log_with(tmp_path: Path, good: int, broken: int) -> str:
    """A tenant log of ``good`` correct accepted sessions and ``broken`` broken ones the users
    said nothing about; returns its URL."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    with open_store(url, "acme") as store:
        for i in range(good):
            instance = FAMILIES["arithmetic"].generate(random.Random(100 + i), "t")
            store.append(_session(i, golden_trajectory(instance, f"good-{i}"), accepted=True))
        for i in range(broken):
            store.append(_session(100 + i, _broken(i), accepted=False))
    return url


def test_quality_selection_leaves_out_broken_tool_use_and_all_keeps_it(tmp_path: Path) -> None:
    # Arrange: 80 correct accepted sessions (more than the platinum budget of 50), 40 broken
    url = _log_with(tmp_path, good=80, broken=40)
    settings = NodeSettings(tenant_id="acme", store=url, base_model="/unused", heldout_fraction=0.2)

    # Execute
    quality = load_local_data(settings)
    everything = load_local_data(NodeSettings(tenant_id="acme", store=url, base_model="/unused",
                                              heldout_fraction=0.2, selection="all"))

    # Assert: the same split; quality keeps every good train trajectory (past the platinum
    # budget: the broken ones take no places) and no broken one
    ids = {t["trajectory_id"] for t, _, _ in quality.train}
    all_ids = {t["trajectory_id"] for t, _, _ in everything.train}
    assert quality.heldout == everything.heldout
    assert ids == {i for i in all_ids if i.startswith("good-")}
    assert any(i.startswith("bad-") for i in all_ids) and len(ids) > 50


def test_offline_ab_heldout_leaves_out_broken_tool_use(tmp_path: Path) -> None:
    # Arrange
    from tenant_node.flower.ab_stats import heldout_trajectories

    url = _log_with(tmp_path, good=20, broken=20)
    # Execute
    with open_store(url, "acme") as store:
        kept = heldout_trajectories(store, 0.5, 0)
    everything = load_local_data(NodeSettings(tenant_id="acme", store=url, base_model="/unused",
                                              heldout_fraction=0.5, selection="all"))
    # Assert: the same split, less the broken trajectories
    split_ids = [t["trajectory_id"] for t in everything.heldout]
    assert [t["trajectory_id"] for t in kept] == [i for i in split_ids if i.startswith("good-")]
    assert any(i.startswith("bad-") for i in split_ids)


def test_node_settings_refuse_a_bad_dedupe_threshold_by_name() -> None:
    import pytest

    from hermes_fed.errors import ConfigError

    config = {"tenant-id": "acme", "store": "sqlite:///x.db", "base-model": "/m"}
    assert NodeSettings.from_node_config({**config, "dedupe-threshold": 1.0}).dedupe_threshold == 1.0
    with pytest.raises(ConfigError, match="dedupe-threshold must be in"):
        NodeSettings.from_node_config({**config, "dedupe-threshold": 0.0})


def _record_local_run(url: str, ids: list[str]) -> None:
    """What ``node train`` leaves in the log: the manifest of ``ids`` and a completed run."""
    from hermes_fed.quality.selection import ManifestItem, manifest_sha256

    items = [ManifestItem(t, "platinum", 5.0, "arithmetic") for t in sorted(ids)]
    sha = manifest_sha256(len(items), 0, items)
    with open_store(url, "acme") as store:
        store.append([
            NewEvent("selection-local", "TrainingDataSelected", {
                "selection_id": f"sel-{sha[:16]}", "target_n": len(items), "seed": 0,
                "manifest_sha256": sha, "n_by_tier": {"platinum": len(items)},
                "items": [i.to_json() for i in items]}),
            NewEvent("training-run-local", "TrainingRunStarted", {
                "run_id": "run-local", "base_model": "/m", "parent_version": None,
                "dataset_manifest_sha256": sha, "n_by_tier": {"platinum": len(items)},
                "config": {}}),
            NewEvent("training-run-local", "TrainingRunCompleted", {
                "run_id": "run-local", "base_model": "/m", "parent_version": None,
                "dataset_manifest_sha256": sha, "n_by_tier": {"platinum": len(items)},
                "metrics": {}}),
        ])


def test_a_local_training_run_does_not_hide_its_data_from_federated_rounds(
        tmp_path: Path) -> None:
    # Arrange: 30 good sessions, 10 of them already used by a local `node train` run
    url = _log_with(tmp_path, good=30, broken=0)
    settings = NodeSettings(tenant_id="acme", store=url, base_model="/unused")
    before = {t["trajectory_id"] for t, _, _ in load_local_data(settings).train}
    used = sorted(before)[:10]
    _record_local_run(url, used)

    # Execute
    federated = {t["trajectory_id"] for t, _, _ in load_local_data(settings).train}
    skipping = {t["trajectory_id"] for t, _, _ in load_local_data(
        NodeSettings(tenant_id="acme", store=url, base_model="/unused", exclude_used=True)).train}

    # Assert: the global adapter never saw the local run's data, so a round trains on it;
    # exclude-used opts into the local runs' rule
    assert federated == before
    assert skipping == before - set(used)


def test_the_round_scores_and_selects_under_the_nodes_quality_config(tmp_path: Path) -> None:
    # Arrange: 20 sessions nobody reacted to (implicit score 0.30: bronze by default, never
    # selected); the node's TOML lowers silver to 0.25
    url = f"sqlite:///{tmp_path / 'events.db'}"
    with open_store(url, "acme") as store:
        for i in range(20):
            instance = FAMILIES["arithmetic"].generate(random.Random(200 + i), "t")
            store.append(_session(i, golden_trajectory(instance, f"quiet-{i}"), accepted=False))
    toml = tmp_path / "node.toml"
    toml.write_text('tenant_id = "acme"\n[quality.tiers]\nsilver_from = 0.25\n')

    # Execute
    default = load_local_data(NodeSettings(tenant_id="acme", store=url, base_model="/unused"))
    configured = load_local_data(NodeSettings(tenant_id="acme", store=url, base_model="/unused",
                                              quality_config=str(toml)))

    # Assert
    assert default.train == ()
    assert len(configured.train) == 20 - len(configured.heldout)
    assert {tier for _, _, tier in configured.train} == {"silver"}
