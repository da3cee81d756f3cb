"""``hermes-fed node train`` end to end: quality selection -> LoRA -> evaluation -> events."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from hermes_fed.events import NewEvent
from hermes_fed.training.tiny_model import init_tiny_model
from tenant_node.config import load_node_config
from tenant_node.ingest.runtime import open_node_store

CALC = {"name": "calculator", "description": "Evaluate arithmetic", "parameters": {"type": "object"}}


def _session(i: int) -> list[NewEvent]:
    a, b = 3 + i, 7 + 2 * i
    tid = f"s{i}-t1"
    good = i % 4 != 0
    final = f"{a} + {b} = {a + b}" if good else f"{a} + {b} = {a + b + 1}"
    trajectory = {
        "trajectory_id": tid,
        "task": f"What is {a} + {b}?",
        "task_type": "arithmetic",
        "tools": [CALC],
        "messages": [
            {"role": "user", "content": f"What is {a} + {b}? Reply to sam{i}@example.com"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c1", "name": "calculator", "arguments": {"expression": f"{a}+{b}"}}],
            },
            {
                "role": "tool",
                "tool_call_id": "c1",
                "name": "calculator",
                "content": json.dumps({"result": a + b}),
            },
            {"role": "assistant", "content": final},
        ],
        "final_response": final,
    }
    stream = f"session-{i}"
    feedback = (
        ("OutputAccepted", {"trajectory_id": tid})
        if good
        else ("ErrorReported", {"trajectory_id": tid, "reason": "wrong"})
    )
    return [
        NewEvent(stream, "SessionStarted", {"user_ref": f"u{i}", "model_version": "base"}, subject=f"u{i}"),
        NewEvent(stream, "TrajectoryRecorded", trajectory),
        NewEvent(stream, feedback[0], feedback[1]),
    ]


@pytest.mark.slow
def test_node_train_records_the_run_and_a_rerun_trains_nothing_twice(tmp_path: Path) -> None:
    # Prepare: a node with 16 scored sessions in its log (through the redaction gate)
    (tmp_path / "node.toml").write_text(
        'tenant_id = "acme"\ndata_dir = "data"\nmetrics_port = 0\ntoken = "test-token-0123456789"\n'
    )
    config = load_node_config(tmp_path / "node.toml")
    store = open_node_store(config)
    for i in range(16):
        store.append(_session(i))
    store.close()
    model = init_tiny_model(tmp_path / "model", "1m")
    cmd = [
        sys.executable,
        "-m",
        "hermes_fed.cli",
        "node",
        "train",
        "--config",
        str(tmp_path / "node.toml"),
        "--base-model",
        str(model),
        "--out",
        str(tmp_path / "runs"),
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--max-length",
        "256",
        "--heldout-fraction",
        "0.25",
    ]
    # Execute
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    # Assert
    assert first.returncode == 0, first.stderr[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert "nothing to train: tenant acme: no new scored trajectories" in second.stdout
    store = open_node_store(config)
    events = list(store.read())
    store.close()
    counts = Counter(e.type for e in events)
    assert counts["TrainingDataSelected"] == 1
    assert counts["TrainingRunStarted"] == 1
    assert counts["TrainingRunCompleted"] == 1
    selected = next(e for e in events if e.type == "TrainingDataSelected").data
    completed = next(e for e in events if e.type == "TrainingRunCompleted").data
    assert completed["dataset_manifest_sha256"] == selected["manifest_sha256"]
    assert completed["metrics"]["num_examples"] == len(selected["items"]) > 0
    assert "heldout_loglik_adapter_mean" in completed["metrics"] or any(
        "loglik" in k for k in completed["metrics"]
    )
    run_dir = tmp_path / "runs" / completed["run_id"] / "adapter"
    assert (run_dir / "adapter_model.safetensors").exists()
    # node status reports the flywheel velocity, now with the trained trajectories counted
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "hermes_fed.cli",
            "node",
            "status",
            "--config",
            str(tmp_path / "node.toml"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert status.returncode == 0, status.stderr[-2000:]
    velocity = json.loads(status.stdout)["velocity"]
    assert velocity["trajectories"] == 16
    assert velocity["used_in_training"] == len(selected["items"])
    assert sum(velocity["tier_histogram"].values()) == 16
    # The tiers came from the quality pipeline: the 12 accepted answers are platinum; the 4
    # reported errors are bronze and never SFT data.
    assert velocity["tier_histogram"].get("bronze") == 4
    assert {item["tier"] for item in selected["items"]} == {"platinum"}


@pytest.mark.slow
def test_a_crashed_run_resumes_with_the_same_run_id_and_no_duplicate_events(tmp_path: Path) -> None:
    # Prepare: a run that was interrupted after TrainingRunStarted (nothing completed)
    from hermes_fed.training.config import LoraTrainingConfig
    from tenant_node.local_training import plan_training, run_id_for, train_on_node

    (tmp_path / "node.toml").write_text(
        'tenant_id = "acme"\ndata_dir = "data"\nmetrics_port = 0\ntoken = "test-token-0123456789"\n'
    )
    config = load_node_config(tmp_path / "node.toml")
    store = open_node_store(config)
    for i in range(12):
        store.append(_session(i))
    model = init_tiny_model(tmp_path / "model", "1m")
    lora = LoraTrainingConfig(max_steps=2, batch_size=4, max_length=256, device="cpu")
    plan = plan_training(store, target_n=50, heldout_fraction=0.25)
    run_id = run_id_for(plan, lora, None)
    crashed = tmp_path / "runs" / run_id / "adapter"
    # Execute: train twice on the same plan (the second is the restart after a crash)
    first_id, first = train_on_node(
        store, plan, base_model_dir=model, output_root=tmp_path / "runs", config=lora
    )
    second_id, second = train_on_node(
        store, plan, base_model_dir=model, output_root=tmp_path / "runs", config=lora
    )
    # Assert
    assert first_id == second_id == run_id and crashed.exists()
    assert not first.resumed and second.resumed
    counts = Counter(e.type for e in store.read())
    store.close()
    assert (
        counts["TrainingRunStarted"] == counts["TrainingRunCompleted"] == counts["TrainingDataSelected"] == 1
    )
