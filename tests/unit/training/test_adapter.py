"""Adapter I/O: state <-> peft model, PEFT directories, manifest, base-model hash."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_fed.errors import AdapterError
from hermes_fed.training.adapter import (
    ADAPTER_WEIGHTS,
    MANIFEST,
    AdapterManifest,
    adapter_state,
    base_model_sha256,
    build_peft_model,
    load_adapter,
    load_adapter_state,
    load_base_model,
    save_adapter,
    state_sha256,
)
from hermes_fed.training.config import LoraTrainingConfig
from hermes_fed.training.dataset import TrainingExample
from hermes_fed.training.trainer import train_adapter
from tests.unit.training.tasks import arithmetic_trajectory

CONFIG = LoraTrainingConfig(
    r=4,
    alpha=8.0,
    lr=1e-2,
    max_steps=3,
    batch_size=4,
    device="cpu",
    target_modules=("q_proj", "v_proj", "down_proj"),
)


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path) -> dict[str, np.ndarray]:
    examples = [TrainingExample(arithmetic_trajectory(i), 1.0, "gold") for i in range(8)]
    return train_adapter(tiny_model_dir, examples, CONFIG).adapter


def _logits(model: Any) -> torch.Tensor:
    ids = torch.arange(3, 40).unsqueeze(0)
    model.eval()
    with torch.no_grad():
        out: torch.Tensor = model(input_ids=ids).logits
    return out


def test_state_names_and_shapes_follow_peft(trained: dict[str, np.ndarray]) -> None:
    a = [k for k in trained if k.endswith("lora_A.weight")]
    b = [k for k in trained if k.endswith("lora_B.weight")]
    assert len(a) == len(b) == 2 * 3  # 2 layers x 3 target modules
    q_a = next(k for k in a if "q_proj" in k)
    down_b = next(k for k in b if "down_proj" in k)
    assert trained[q_a].shape == (4, 128)  # (r, in)
    assert trained[down_b].shape == (128, 4)  # (out, r)
    assert all(v.dtype == np.float32 for v in trained.values())


def test_save_and_load_reproduce_logits_exactly(
    tiny_model_dir: Path, tmp_path: Path, trained: dict[str, np.ndarray]
) -> None:
    # Prepare: the reference model holds the trained state directly
    base, _ = load_base_model(tiny_model_dir)
    reference = build_peft_model(base, CONFIG)
    load_adapter_state(reference, trained)
    expected = _logits(reference)
    manifest = AdapterManifest(
        base_model_sha256=base_model_sha256(tiny_model_dir),
        parent_version="v1",
        dataset_manifest_sha256="ab" * 32,
        metrics={"heldout_loglik_delta": 1.5},
    )
    # Execute
    directory = save_adapter(tmp_path / "adapter", trained, CONFIG, manifest, base_model_dir=tiny_model_dir)
    saved = load_adapter(directory)
    base2, _ = load_base_model(tiny_model_dir)
    ours = build_peft_model(base2, saved.config)
    load_adapter_state(ours, saved.state)
    # Assert: bit-identical through our loader and through peft's own loader
    assert torch.equal(_logits(ours), expected)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    theirs = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), str(directory)
    )
    assert torch.equal(_logits(theirs), expected)
    assert not torch.equal(_logits(load_base_model(tiny_model_dir)[0]), expected)
    assert saved.config == CONFIG
    assert saved.manifest.parent_version == "v1"
    assert saved.manifest.metrics == {"heldout_loglik_delta": 1.5}
    assert saved.manifest.adapter_sha256 == state_sha256(trained)
    body = json.loads((directory / MANIFEST).read_text())
    assert body["base_model_sha256"] == base_model_sha256(tiny_model_dir)
    peft_config = json.loads((directory / "adapter_config.json").read_text())
    assert peft_config["r"] == 4 and peft_config["peft_type"] == "LORA"


def test_tampered_adapter_file_is_refused(tmp_path: Path, trained: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    directory = save_adapter(tmp_path / "a", trained, CONFIG, AdapterManifest("0" * 64))
    changed = {k: v.copy() for k, v in trained.items()}
    first = sorted(changed)[0]
    changed[first][0, 0] += 1.0
    save_file(changed, str(directory / ADAPTER_WEIGHTS))
    with pytest.raises(AdapterError, match="adapter_sha256"):
        load_adapter(directory)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s, k: {**s, k: s[k][:, :-1]}, "shape"),
        (lambda s, k: {kk: v for kk, v in s.items() if kk != k}, "missing"),
        (lambda s, k: {**s, "base_model.model.extra.lora_A.weight": s[k]}, "unknown"),
        (lambda s, k: {**s, k: np.full_like(s[k], np.nan)}, "NaN"),
    ],
    ids=["shape", "missing", "unknown", "nan"],
)
def test_state_that_does_not_fit_is_refused(
    tiny_model_dir: Path, trained: dict[str, np.ndarray], mutate: Any, message: str
) -> None:
    model = build_peft_model(load_base_model(tiny_model_dir)[0], CONFIG)
    key = sorted(trained)[0]
    before = adapter_state(model)
    with pytest.raises(AdapterError, match=message):
        load_adapter_state(model, mutate(trained, key))
    after = adapter_state(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)  # nothing changed


def test_base_model_hash_tracks_weight_bytes(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in tiny_model_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert base_model_sha256(copy) == base_model_sha256(tiny_model_dir)
    (copy / "config.json").write_text("{}")  # not a weight file
    assert base_model_sha256(copy) == base_model_sha256(tiny_model_dir)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    assert base_model_sha256(copy) != base_model_sha256(tiny_model_dir)
    with pytest.raises(AdapterError, match="no weight files"):
        base_model_sha256(tmp_path / "empty-dir-does-not-exist")


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.tuples(st.integers(1, 4), st.integers(1, 4)),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 2**32 - 1),
)
def test_state_sha256_is_order_free_and_value_sensitive(
    shapes: dict[str, tuple[int, int]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    state = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    reordered = dict(reversed(list(state.items())))
    assert state_sha256(state) == state_sha256(reordered)
    key = next(iter(state))
    bumped = {**state, key: state[key] + np.float32(1.0)}
    assert state_sha256(bumped) != state_sha256(state)


def test_config_round_trip_and_frozen_a_config(tmp_path: Path, trained: dict[str, np.ndarray]) -> None:
    config = dataclasses.replace(CONFIG, frozen_a=True, frozen_a_seed=9)
    saved = load_adapter(save_adapter(tmp_path / "f", trained, config, AdapterManifest("0")))
    assert saved.config == config
