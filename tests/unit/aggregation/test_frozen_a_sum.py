"""The frozen-a weighted sum: the only thing secure aggregation reveals, and enough."""

from __future__ import annotations

import numpy as np
import pytest

from hermes_fed.aggregation import (
    ClientUpdate,
    WeightedSum,
    finalize_frozen_a,
    make_aggregator,
    weighted_contribution,
    weighted_sum,
)
from hermes_fed.errors import AggregationError

from .reference import MODULES, b_key, random_adapter


def _round() -> tuple[list[ClientUpdate], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    shared = random_adapter(rng, 3)
    updates = [ClientUpdate(f"node-{i}", n, random_adapter(rng, 3, shared_a=shared))
               for i, n in enumerate((3, 17, 40))]
    return updates, shared


def test_contribution_is_count_times_b_without_a() -> None:
    # Prepare
    update = _round()[0][1]
    # Execute
    part = weighted_contribution(update)
    # Assert
    assert part.total_examples == 17
    assert set(part.tensors) == {b_key(p) for p, _, _ in MODULES}
    for key, value in part.tensors.items():
        np.testing.assert_allclose(value, 17 * update.tensors[key], rtol=1e-15)


def test_sum_then_finalize_equals_the_frozen_a_aggregator() -> None:
    # Prepare
    updates, shared = _round()
    # Execute: what a coordinator behind secure aggregation can do
    summed = weighted_sum(updates)
    adapter = finalize_frozen_a(summed, {k: v for k, v in shared.items() if "lora_A" in k})
    direct = make_aggregator("frozen-a").aggregate(updates, scale=1.0).tensors
    # Assert
    assert summed.total_examples == 60
    assert adapter.keys() == direct.keys()
    for key, value in direct.items():
        np.testing.assert_allclose(adapter[key], value, rtol=1e-12)


def test_sums_merge_in_any_grouping() -> None:
    # Prepare
    p, q, r = (weighted_contribution(u) for u in _round()[0])
    # Execute
    left, right = (p + q) + r, p + (q + r)
    # Assert
    assert left.total_examples == right.total_examples == 60
    for key in left.tensors:
        np.testing.assert_allclose(left.tensors[key], right.tensors[key], rtol=1e-14)


def test_mismatched_sums_do_not_add() -> None:
    part = weighted_contribution(_round()[0][0])
    other = WeightedSum({"x.weight": np.ones(2)}, 1)
    with pytest.raises(AggregationError, match="only one of them"):
        _ = part + other
    key = next(iter(part.tensors))
    bad = WeightedSum({k: (np.ones(1) if k == key else v) for k, v in part.tensors.items()}, 1)
    with pytest.raises(AggregationError, match=f"tensor {key} has shapes"):
        _ = part + bad


def test_empty_sums_are_refused() -> None:
    with pytest.raises(AggregationError, match="0 examples"):
        WeightedSum({}, 0).mean()
    with pytest.raises(AggregationError, match="empty round"):
        weighted_sum([])
    summed = weighted_sum(_round()[0])
    with pytest.raises(AggregationError, match="needs the shared tensor"):
        finalize_frozen_a(summed, {})
