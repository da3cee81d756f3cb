"""Update norms, clipping and the outlier report, against dense numpy."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from hermes_fed.aggregation import AggregationConfig, ClientUpdate, make_aggregator
from hermes_fed.aggregation.robustness import modified_z_scores

from .reference import MODULES, a_key, b_key, delta, random_adapter, rel

SCALE = 0.5


def _round(seed: int, counts: tuple[int, ...] = (20, 30, 50), *,
           shared_a: bool = False) -> tuple[list[ClientUpdate], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    previous = random_adapter(rng, 3)
    shared = previous if shared_a else None
    updates = [ClientUpdate(f"node-{i}", n, random_adapter(rng, 3, shared_a=shared))
               for i, n in enumerate(counts)]
    return updates, previous


def _dense_norm(adapter: dict[str, np.ndarray], previous: dict[str, np.ndarray] | None) -> float:
    total = 0.0
    for prefix, _, _ in MODULES:
        ref = 0.0 if previous is None else delta(previous, prefix, SCALE)
        total += float(np.sum(np.square(delta(adapter, prefix, SCALE) - ref)))
    return float(np.sqrt(total))


@pytest.mark.parametrize("with_previous", [True, False])
def test_update_norms_equal_the_dense_norm_of_the_change(with_previous: bool) -> None:
    # Prepare
    updates, previous = _round(0)
    prev = previous if with_previous else None
    # Execute
    report = make_aggregator("exact").aggregate(updates, scale=SCALE, previous=prev).report
    # Assert
    for update in updates:
        assert report.update_norms[update.node_id] == pytest.approx(
            _dense_norm(dict(update.tensors), prev), rel=1e-10)
    assert report.clipped_nodes == ()


@pytest.mark.parametrize("mode", ["exact", "frozen-a"])
@pytest.mark.parametrize("with_previous", [True, False])
def test_clipping_shrinks_each_update_onto_the_bound_exactly(mode: str, with_previous: bool) -> None:
    # Prepare: a bound between the median and the largest update norm (a bound equal to one
    # node's norm made that node a rounding tie between this test and the aggregator)
    updates, previous = _round(1, shared_a=True)
    prev = previous if with_previous else None
    norms = [_dense_norm(dict(u.tensors), prev) for u in updates]
    bound = float(np.median(norms) + max(norms)) / 2
    config = AggregationConfig(clip_norm=bound, keep_stacked=True)
    # Execute
    result = make_aggregator(mode, config).aggregate(updates, scale=SCALE, previous=prev)
    # Assert: mean of ΔW_g + c_i (ΔW_i − ΔW_g) with c_i = min(1, bound / norm_i), formed densely
    coefs = [min(1.0, bound / n) for n in norms]
    assert result.report.clipped_nodes == tuple(
        u.node_id for u, n in zip(updates, norms, strict=True) if n > bound)
    assert len(result.report.clipped_nodes) == 1
    tensors = result.stacked if result.stacked is not None else result.tensors
    total = sum(u.num_examples for u in updates)
    for prefix, _, _ in MODULES:
        ref = 0.0 if prev is None else delta(prev, prefix, SCALE)
        clipped = [ref + c * (delta(u.tensors, prefix, SCALE) - ref)
                   for u, c in zip(updates, coefs, strict=True)]
        mean = sum(u.num_examples / total * d for u, d in zip(updates, clipped, strict=True))
        assert rel(delta(tensors, prefix, SCALE), mean) < 1e-10
    for node, c in zip(result.report.nodes, coefs, strict=True):
        assert node.clip_coefficient == pytest.approx(c, rel=1e-12)


def test_fedavg_clipping_shrinks_the_factor_deltas() -> None:
    # Prepare
    updates, previous = _round(2)
    bound = 0.5 * min(_dense_norm(dict(u.tensors), previous) for u in updates)
    # Execute
    result = make_aggregator("fedavg", AggregationConfig(clip_norm=bound)).aggregate(
        updates, scale=SCALE, previous=previous)
    # Assert: every node is clipped; A' = A_g + c (A_i − A_g), same for B
    assert len(result.report.clipped_nodes) == 3
    total = sum(u.num_examples for u in updates)
    for prefix, _, _ in MODULES:
        for key in (a_key(prefix), b_key(prefix)):
            expected = sum(
                u.num_examples / total
                * (previous[key] + n.clip_coefficient * (u.tensors[key] - previous[key]))
                for u, n in zip(updates, result.report.nodes, strict=True))
            np.testing.assert_allclose(result.tensors[key], expected, rtol=1e-12)


# (values, floor, expected robust z-scores computed by hand)
Z_TABLE = [
    ([1.0, 2.0, 3.0, 4.0, 100.0], 0.0, [-1.349, -0.6745, 0.0, 0.6745, 65.4265]),
    ([1.0, 2.0, 3.0, 4.0, 100.0], 0.1, [-1.349, -0.6745, 0.0, 0.6745, 65.4265]),  # MAD wins
    ([5.0, 5.0, 5.0, 5.0], 0.1, [0.0, 0.0, 0.0, 0.0]),
    # MAD = 0: falls back to the mean absolute deviation (9 / 4) times 1.253314
    ([1.0, 1.0, 1.0, 10.0], 0.0, [0.0, 0.0, 0.0, 9.0 / (1.253314 * 2.25)]),
    # three near-identical nodes: MAD 0.01 would give z = 11.5; the floor 0.1 * 2.01 wins
    ([2.0, 2.01, 2.18], 0.0, [-0.6745, 0.0, 11.4665]),
    ([2.0, 2.01, 2.18], 0.1, [-0.01 / 0.201, 0.0, 0.17 / 0.201]),
    ([7.0], 0.1, [0.0]),
    ([0.0, 0.0, 0.0], 0.1, [0.0, 0.0, 0.0]),
]


@pytest.mark.parametrize(("values", "floor", "expected"), Z_TABLE)
def test_modified_z_scores(values: list[float], floor: float, expected: list[float]) -> None:
    np.testing.assert_allclose(modified_z_scores(np.array(values), floor), expected, atol=1e-4)


def test_outlier_report_names_the_node_with_the_outsized_update(
        caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: six similar nodes and one whose B is 20 times larger
    rng = np.random.default_rng(3)
    base = random_adapter(rng, 3)
    updates = [ClientUpdate(f"tenant-{i}", 100,
                            {k: v + 0.2 * rng.normal(size=v.shape) * np.std(v)
                             for k, v in base.items()})
               for i in range(6)]
    loud = {k: (20 * v if "lora_B" in k else v) for k, v in base.items()}
    updates.append(ClientUpdate("tenant-loud", 100, loud))
    # Execute
    with caplog.at_level(logging.WARNING, logger="hermes_fed.aggregation"):
        report = make_aggregator("exact").aggregate(updates, scale=SCALE).report
    # Assert: reported and logged, and still aggregated (not dropped)
    assert [r.getMessage().split(" update_norm")[0] for r in caplog.records] == [
        "outlier mode=exact node=tenant-loud"]
    assert report.outliers == ("tenant-loud",)
    assert report.nodes[-1].z_score > 3.5
    assert report.to_dict()["outliers"] == ["tenant-loud"]
    assert sum(n.weight for n in report.nodes) == pytest.approx(1.0)
