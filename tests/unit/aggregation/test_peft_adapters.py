"""Real peft adapters: key names, ``ΔW = (alpha / r) · B @ A``, and loading the results back.

The reference is peft's own ``get_delta_weight`` of each LoRA layer (not our maths).
"""

from __future__ import annotations

import numpy as np
import pytest

from hermes_fed.aggregation import AggregationConfig, ClientUpdate, make_aggregator

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

RANK, ALPHA, TARGETS = 4, 8.0, ("q_proj", "down_proj")


class _Tiny(torch.nn.Module):  # type: ignore[misc,name-defined]
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = torch.nn.Linear(10, 12, bias=False)
        self.down_proj = torch.nn.Linear(12, 10, bias=False)


def _peft_model(seed: int, rank: int = RANK, alpha: float = ALPHA) -> object:
    torch.manual_seed(0)
    base = _Tiny()  # the same base weights everywhere
    torch.manual_seed(seed)
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(TARGETS),
                             init_lora_weights=False)  # random B too: a "trained" adapter
    return peft.get_peft_model(base, config)


def _deltas(model: object) -> dict[str, np.ndarray]:
    out = {}
    for name in TARGETS:
        layer = getattr(model.base_model.model, name)  # type: ignore[attr-defined]
        out[name] = layer.get_delta_weight("default").detach().numpy().astype(np.float64)
    return out


def _state(model: object) -> dict[str, np.ndarray]:
    state = peft.get_peft_model_state_dict(model)
    return {k: v.detach().numpy().copy() for k, v in state.items()}


def _load(tensors: dict[str, np.ndarray], rank: int, alpha: float) -> dict[str, np.ndarray]:
    model = _peft_model(99, rank, alpha)
    result = peft.set_peft_model_state_dict(
        model, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()})
    assert not result.unexpected_keys
    return _deltas(model)


def test_peft_adapters_aggregate_exactly_and_load_back() -> None:
    # Prepare: three nodes' peft adapters and peft's own ΔW of each
    torch.set_num_threads(1)
    models = [_peft_model(seed) for seed in (1, 2, 3)]
    counts = (10, 20, 70)
    updates = [ClientUpdate(f"n{i}", n, _state(m))
               for i, (n, m) in enumerate(zip(counts, models, strict=True))]
    assert any(k.endswith("q_proj.lora_A.weight") for k in updates[0].tensors)
    mean = {name: sum(n / 100 * _deltas(m)[name] for n, m in zip(counts, models, strict=True))
            for name in TARGETS}
    # Execute
    result = make_aggregator("exact", AggregationConfig(keep_stacked=True)).aggregate(
        updates, scale=ALPHA / RANK)
    assert result.stacked is not None
    stacked = _load(result.stacked, 3 * RANK, 3 * ALPHA)  # same alpha / r
    compressed = _load(result.tensors, RANK, ALPHA)
    # Assert
    for name in TARGETS:
        ref = mean[name]
        assert np.linalg.norm(stacked[name] - ref) / np.linalg.norm(ref) < 1e-5
        u, s, vt = np.linalg.svd(ref)
        optimum = (u[:, :RANK] * s[:RANK]) @ vt[:RANK]
        assert np.linalg.norm(compressed[name] - optimum) / np.linalg.norm(ref) < 1e-5
    layer_norms = {lay.prefix.rsplit(".", 1)[-1]: lay.exact_norm for lay in result.report.layers}
    for name in TARGETS:
        assert layer_norms[name] == pytest.approx(np.linalg.norm(mean[name]), rel=1e-5)
