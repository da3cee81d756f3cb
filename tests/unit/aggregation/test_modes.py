"""Each aggregation mode against the dense numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from hermes_fed.aggregation import (
    AGGREGATORS,
    AggregationConfig,
    ClientUpdate,
    ExactStackingAggregator,
    FedAvgAggregator,
    FrozenAAggregator,
    make_aggregator,
)
from hermes_fed.errors import ConfigError

from .reference import MODULES, a_key, b_key, best_rank, delta, exact_mean, random_adapter, rel

SCALE = 2.0  # alpha 16 / r 8


def _round(seed: int, rank: int = 3, counts: tuple[int, ...] = (10, 30, 60), *,
           shared_a: bool = False, dtype: type = np.float64) -> list[ClientUpdate]:
    rng = np.random.default_rng(seed)
    shared = random_adapter(rng, rank) if shared_a else None
    return [ClientUpdate(f"node-{i}", n, random_adapter(rng, rank, shared_a=shared, dtype=dtype))
            for i, n in enumerate(counts)]


def test_registry_names_the_three_modes() -> None:
    assert {"fedavg": FedAvgAggregator, "exact": ExactStackingAggregator,
            "frozen-a": FrozenAAggregator}.items() <= AGGREGATORS.items()
    assert isinstance(make_aggregator("exact"), ExactStackingAggregator)
    with pytest.raises(ConfigError, match=r"unknown aggregation mode 'median'.*exact"):
        make_aggregator("median")


def test_exact_stacked_adapter_is_the_weighted_mean_within_1e5() -> None:
    # Prepare: float32 adapters, as peft saves them
    updates = _round(0, dtype=np.float32)
    # Execute
    result = make_aggregator("exact", AggregationConfig(keep_stacked=True)).aggregate(
        updates, scale=SCALE)
    # Assert
    assert result.stacked is not None
    for prefix, _, _ in MODULES:
        assert result.stacked[a_key(prefix)].shape[0] == 9  # 3 nodes x rank 3
        assert rel(delta(result.stacked, prefix, SCALE), exact_mean(updates, prefix, SCALE)) < 1e-5


def test_exact_recompression_is_the_eckart_young_optimum_and_reports_its_residual() -> None:
    # Prepare
    updates = _round(1)
    # Execute
    result = make_aggregator("exact").aggregate(updates, scale=SCALE)
    # Assert
    errors, norms = [], []
    layers = {lay.prefix: lay for lay in result.report.layers}
    for prefix, n_out, n_in in MODULES:
        layer = layers[prefix]
        mean = exact_mean(updates, prefix, SCALE)
        optimum = best_rank(mean, 3)
        got = delta(result.tensors, prefix, SCALE)
        assert result.tensors[a_key(prefix)].shape == (3, n_in)
        assert result.tensors[b_key(prefix)].shape == (n_out, 3)
        assert rel(got, optimum) < 1e-9
        assert (layer.rank_in, layer.rank_out) == (9, 3)
        assert layer.residual == pytest.approx(rel(optimum, mean), rel=1e-8)
        assert layer.residual > 0.05  # three random rank-3 updates do not fit in rank 3
        assert layer.exact_norm == pytest.approx(np.linalg.norm(mean), rel=1e-10)
        errors.append(np.linalg.norm(optimum - mean))
        norms.append(np.linalg.norm(mean))
    overall = np.sqrt(np.sum(np.square(errors))) / np.sqrt(np.sum(np.square(norms)))
    assert result.report.residual == pytest.approx(overall, rel=1e-8)


@pytest.mark.parametrize("mode", ["fedavg", "exact"])
def test_fedavg_error_is_reported_against_the_dense_exact_mean(mode: str) -> None:
    # Prepare: separate random inits of A
    updates = _round(2)
    # Execute
    report = make_aggregator(mode).aggregate(updates, scale=SCALE).report
    # Assert: fedavg's factor means, multiplied, against the dense exact mean
    total = sum(u.num_examples for u in updates)
    layers = {lay.prefix: lay for lay in report.layers}
    for prefix, _, _ in MODULES:
        layer = layers[prefix]
        b = sum(u.num_examples / total * u.tensors[b_key(prefix)] for u in updates)
        a = sum(u.num_examples / total * u.tensors[a_key(prefix)] for u in updates)
        expected = rel(SCALE * b @ a, exact_mean(updates, prefix, SCALE))
        assert layer.fedavg_error == pytest.approx(expected, rel=1e-8)
        assert layer.fedavg_error > 0.1
    assert report.fedavg_error is not None
    if mode == "exact":  # the rank-3 optimum beats factor averaging (Eckart–Young)
        assert report.fedavg_error > report.residual


def test_fedavg_returns_the_factor_means_and_its_residual_is_its_error() -> None:
    updates = _round(3)
    result = make_aggregator("fedavg").aggregate(updates, scale=SCALE)
    total = sum(u.num_examples for u in updates)
    for prefix, _, _ in MODULES:
        for key in (a_key(prefix), b_key(prefix)):
            expected = sum(u.num_examples / total * u.tensors[key] for u in updates)
            np.testing.assert_allclose(result.tensors[key], expected, rtol=1e-12)
    assert result.report.residual == result.report.fedavg_error


@pytest.mark.parametrize("mode", ["fedavg", "exact", "frozen-a"])
def test_identical_clients_give_zero_error_in_every_mode(mode: str) -> None:
    # Prepare: three nodes with the very same adapter
    rng = np.random.default_rng(4)
    adapter = random_adapter(rng, 3)
    updates = [ClientUpdate(f"n{i}", n, adapter) for i, n in enumerate((5, 7, 11))]
    # Execute
    result = make_aggregator(mode).aggregate(updates, scale=SCALE)
    # Assert
    assert result.report.residual < 1e-12
    assert result.report.fedavg_error is None or result.report.fedavg_error < 1e-12
    for prefix, _, _ in MODULES:
        assert rel(delta(result.tensors, prefix, SCALE), delta(adapter, prefix, SCALE)) < 1e-12


def test_frozen_a_is_exact_and_keeps_a() -> None:
    # Prepare
    updates = _round(5, shared_a=True)
    # Execute
    result = make_aggregator("frozen-a").aggregate(updates, scale=SCALE)
    # Assert
    for prefix, _, _ in MODULES:
        np.testing.assert_array_equal(result.tensors[a_key(prefix)],
                                      updates[0].tensors[a_key(prefix)])
        assert rel(delta(result.tensors, prefix, SCALE), exact_mean(updates, prefix, SCALE)) < 1e-12
    assert result.report.residual == 0.0 and result.report.fedavg_error is None


def test_frozen_a_accepts_b_only_updates_with_a_from_the_previous_adapter() -> None:
    # Prepare: nodes send half the tensors; A comes from the global adapter
    full = _round(6, shared_a=True)
    previous = random_adapter(np.random.default_rng(60), 3, shared_a=full[0].tensors)
    b_only = [ClientUpdate(u.node_id, u.num_examples,
                           {k: v for k, v in u.tensors.items() if "lora_B" in k}) for u in full]
    # Execute
    got = make_aggregator("frozen-a").aggregate(b_only, scale=SCALE, previous=previous)
    want = make_aggregator("frozen-a").aggregate(full, scale=SCALE, previous=previous)
    # Assert
    assert got.tensors.keys() == want.tensors.keys()
    for key in want.tensors:
        np.testing.assert_array_equal(got.tensors[key], want.tensors[key])


@pytest.mark.parametrize("mode", ["fedavg", "exact", "frozen-a"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_result_has_the_input_keys_shapes_and_dtypes(mode: str, dtype: type) -> None:
    updates = _round(7, shared_a=True, dtype=dtype)
    result = make_aggregator(mode).aggregate(updates, scale=SCALE)
    assert result.tensors.keys() == updates[0].tensors.keys()
    for key, value in result.tensors.items():
        assert value.shape == updates[0].tensors[key].shape and value.dtype == dtype


@pytest.mark.parametrize("mode", ["fedavg", "exact", "frozen-a"])
def test_dense_tensors_are_the_weighted_mean(mode: str) -> None:
    # Prepare: a modules_to_save head beside the LoRA pairs
    updates = _round(8, shared_a=True)
    head = "base_model.model.lm_head.modules_to_save.default.weight"
    rng = np.random.default_rng(80)
    updates = [ClientUpdate(u.node_id, u.num_examples, {**u.tensors, head: rng.normal(size=(4, 6))})
               for u in updates]
    # Execute
    result = make_aggregator(mode).aggregate(updates, scale=SCALE)
    # Assert
    total = sum(u.num_examples for u in updates)
    expected = sum(u.num_examples / total * u.tensors[head] for u in updates)
    np.testing.assert_allclose(result.tensors[head], expected, rtol=1e-12)


def test_embedding_factors_are_paired_and_aggregated_exactly() -> None:
    # Prepare: peft's Embedding LoRA keys (bare parameters, no ".weight")
    rng = np.random.default_rng(9)
    prefix = "base_model.model.model.embed_tokens"
    updates = [ClientUpdate(f"n{i}", i + 1, {f"{prefix}.lora_embedding_A": rng.normal(size=(2, 30)),
                                             f"{prefix}.lora_embedding_B": rng.normal(size=(8, 2))})
               for i in range(3)]
    # Execute
    result = make_aggregator("exact", AggregationConfig(keep_stacked=True)).aggregate(
        updates, scale=1.0)
    # Assert
    assert result.stacked is not None and len(result.report.layers) == 1
    mean = sum(u.num_examples / 6 * u.tensors[f"{prefix}.lora_embedding_B"]
               @ u.tensors[f"{prefix}.lora_embedding_A"] for u in updates)
    stacked = result.stacked[f"{prefix}.lora_embedding_B"] @ result.stacked[
        f"{prefix}.lora_embedding_A"]
    assert rel(stacked, mean) < 1e-12


def test_exact_recompresses_heterogeneous_ranks_to_the_configured_rank() -> None:
    # Prepare: nodes trained with ranks 2, 4 and 6
    rng = np.random.default_rng(10)
    updates = [ClientUpdate(f"n{r}", 10, random_adapter(rng, r)) for r in (2, 4, 6)]
    # Execute
    result = make_aggregator("exact", AggregationConfig(rank=4)).aggregate(updates, scale=1.0)
    # Assert
    layers = {lay.prefix: lay for lay in result.report.layers}
    for prefix, _, n_in in MODULES:
        layer = layers[prefix]
        assert result.tensors[a_key(prefix)].shape == (4, n_in)
        mean = exact_mean(updates, prefix, 1.0)
        assert rel(delta(result.tensors, prefix, 1.0), best_rank(mean, 4)) < 1e-9
        assert layer.fedavg_error is None  # factor averaging is undefined across ranks


def test_exact_takes_the_target_rank_from_the_previous_adapter() -> None:
    updates = _round(11, rank=3)
    previous = random_adapter(np.random.default_rng(110), 5)
    result = make_aggregator("exact").aggregate(updates, scale=1.0, previous=previous)
    for prefix, _, n_in in MODULES:
        assert result.tensors[a_key(prefix)].shape == (5, n_in)


def test_report_is_strict_json_for_the_round_report() -> None:
    import json

    updates = _round(12)
    report = make_aggregator("exact", AggregationConfig(clip_norm=1.0)).aggregate(
        updates, scale=SCALE).report
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["mode"] == "exact" and data["total_examples"] == 100
    assert [n["node_id"] for n in data["nodes"]] == ["node-0", "node-1", "node-2"]
    assert data["clipped_nodes"] == list(report.clipped_nodes) and data["clipped_nodes"]
    assert {lay["prefix"] for lay in data["layers"]} == {p for p, _, _ in MODULES}
    assert data["residual"] == report.residual and data["fedavg_error"] == report.fedavg_error
