"""Bad input: clear errors that name the node and the tensor, and nothing changed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from hermes_fed.aggregation import AggregationConfig, ClientUpdate, make_aggregator
from hermes_fed.errors import AggregationError

from .reference import MODULES, a_key, b_key, random_adapter

PREFIX = MODULES[0][0]
A, B = a_key(PREFIX), b_key(PREFIX)
Adapter = dict[str, np.ndarray]


def _round(shared_a: bool = False) -> list[ClientUpdate]:
    rng = np.random.default_rng(0)
    shared = random_adapter(rng, 3) if shared_a else None
    return [ClientUpdate(f"node-{i}", 10, random_adapter(rng, 3, shared_a=shared))
            for i in range(3)]


def _edit(update: ClientUpdate, change: Callable[[Adapter], None]) -> ClientUpdate:
    tensors = dict(update.tensors)
    change(tensors)
    return ClientUpdate(update.node_id, update.num_examples, tensors)


def _set(key: str, value: np.ndarray) -> Callable[[Adapter], None]:
    return lambda t: t.__setitem__(key, value)


# (mode, node index, edit, pattern the message must match)
BAD_TENSORS = [
    ("exact", 1, _set(B, np.ones((13, 3))), r"node node-1: tensor .*q_proj\.lora_B\.weight has "
                                            r"shape \(13, 3\), its out dimension 13 differs"),
    ("fedavg", 2, _set(A, np.ones((3, 11))), r"node node-2: tensor .*q_proj\.lora_A\.weight .*"
                                             r"in dimension 11"),
    ("exact", 0, _set(A, np.ones((4, 10))), r"node node-0: tensor .*lora_A\.weight has rank 4 "
                                            r"but .*lora_B\.weight has rank 3"),
    ("exact", 1, _set(A, np.ones(10)), r"node node-1: tensor .*lora_A\.weight .*expected a matrix"),
    ("exact", 2, lambda t: t.pop(B), r"node node-2: tensor .*q_proj\.lora_B\.weight is missing"),
    ("fedavg", 1, _set("extra.weight", np.ones(2)), r"node node-1: tensor extra\.weight is not "
                                                    r"in the round's adapter"),
    ("exact", 1, _set(A, np.full((3, 10), np.nan)), r"node node-1: tensor .*lora_A\.weight "
                                                    r"holds NaN or inf"),
    ("fedavg", 0, _set(B, np.full((12, 3), np.inf)), r"node node-0: tensor .*lora_B\.weight "
                                                     r"holds NaN or inf"),
    ("frozen-a", 2, _set(B, np.full((12, 3), -np.inf)), r"node node-2: tensor .*lora_B\.weight "
                                                        r"holds NaN or inf"),
    ("exact", 0, _set(A, np.array([["a"] * 10] * 3)), r"node node-0: tensor .*lora_A\.weight "
                                                      r"has dtype <U1"),
    ("frozen-a", 2, _set(A, np.zeros((3, 10))), r"node node-2: tensor .*lora_A\.weight differs "
                                                r"from node node-0's"),
    ("frozen-a", 1, _set(B, np.ones((12, 4))), r"node node-1: tensor .*lora_B\.weight has rank 4"),
    ("fedavg", 1, lambda t: (t.__setitem__(A, np.ones((4, 10))), t.__setitem__(B, np.ones((12, 4)))),
     r"fedavg cannot average tensor .*lora_A\.weight of different ranks .*use mode 'exact'"),
    ("exact", 1, lambda t: (t.__setitem__(A, np.ones((4, 10))), t.__setitem__(B, np.ones((12, 4)))),
     r"ranks of tensor .*lora_A\.weight differ .*set AggregationConfig\.rank"),
]


@pytest.mark.parametrize(("mode", "index", "edit", "pattern"), BAD_TENSORS)
def test_bad_tensor_raises_naming_node_and_tensor(mode: str, index: int,
                                                  edit: Callable[[Adapter], None],
                                                  pattern: str) -> None:
    # Prepare
    updates = _round(shared_a=True)
    updates[index] = _edit(updates[index], edit)
    before = [{k: np.array(v, copy=True) for k, v in u.tensors.items()} for u in updates]
    # Execute / Assert
    with pytest.raises(AggregationError, match=pattern):
        make_aggregator(mode).aggregate(updates, scale=1.0)
    for update, saved in zip(updates, before, strict=True):  # inputs untouched
        assert update.tensors.keys() == saved.keys()
        for key, value in saved.items():
            np.testing.assert_array_equal(update.tensors[key], value)


@pytest.mark.parametrize("mode", ["fedavg", "exact", "frozen-a"])
def test_nan_in_the_previous_adapter_names_global(mode: str) -> None:
    updates = _round(shared_a=True)
    previous = dict(updates[0].tensors)
    previous[B] = np.full((12, 3), np.nan)
    with pytest.raises(AggregationError, match=r"node global: tensor .*lora_B\.weight holds NaN"):
        make_aggregator(mode).aggregate(updates, scale=1.0, previous=previous)


def test_frozen_a_refuses_a_previous_adapter_with_another_a() -> None:
    updates = _round(shared_a=True)
    previous = random_adapter(np.random.default_rng(9), 3)
    with pytest.raises(AggregationError, match=r"node node-0: tensor .*lora_A\.weight differs "
                                               r"from node global's"):
        make_aggregator("frozen-a").aggregate(updates, scale=1.0, previous=previous)


def test_lone_lora_factor_is_refused() -> None:
    updates = _round()
    updates = [_edit(u, lambda t: t.pop(A)) for u in updates]
    with pytest.raises(AggregationError, match=r"tensor .*q_proj\.lora_B\.weight has no matching"):
        make_aggregator("exact").aggregate(updates, scale=1.0)


@pytest.mark.parametrize(("updates", "pattern"), [
    ([], "empty round"),
    ([ClientUpdate("a", 0, {}), ClientUpdate("b", 0, {})], "num_examples = 0"),
    ([ClientUpdate("a", 1, {}), ClientUpdate("a", 2, {})], "node a sent more than one update"),
    ([ClientUpdate("global", 1, {})], "reserved"),
])
def test_bad_round_is_refused(updates: list[ClientUpdate], pattern: str) -> None:
    with pytest.raises(AggregationError, match=pattern):
        make_aggregator("exact").aggregate(updates, scale=1.0)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf"), True])
def test_bad_scale_is_refused(scale: float) -> None:
    with pytest.raises(AggregationError, match="scale"):
        make_aggregator("fedavg").aggregate(_round(), scale=scale)


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"node_id": "", "num_examples": 1}, "node_id must be a non-empty str, got ''"),
    ({"node_id": "n", "num_examples": -1}, "num_examples of node n must be an integer >= 0, got -1"),
    ({"node_id": "n", "num_examples": 2.5}, "got 2.5"),
    ({"node_id": "n", "num_examples": True}, "got True"),
])
def test_client_update_validates_its_fields(kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        ClientUpdate(tensors={}, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"clip_norm": 0.0}, r"clip_norm must be None or a finite number > 0, got 0\.0"),
    ({"clip_norm": float("inf")}, "clip_norm .* got inf"),
    ({"outlier_z": -1.0}, r"outlier_z must be a number > 0, got -1\.0"),
    ({"outlier_floor": -0.1}, r"outlier_floor must be a finite number >= 0, got -0\.1"),
    ({"rank": 0}, "rank must be None or an integer >= 1, got 0"),
    ({"rank": 2.0}, r"rank .* got 2\.0"),
])
def test_aggregation_config_validates_its_fields(kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        AggregationConfig(**kwargs)  # type: ignore[arg-type]


def test_aggregation_config_defaults_are_documented() -> None:
    from dataclasses import fields
    assert all(f.metadata.get("help") for f in fields(AggregationConfig))
