"""Aggregation identities as hypothesis properties (weights, order, one client, shapes)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hermes_fed.aggregation import ClientUpdate, make_aggregator
from hermes_fed.errors import AggregationError

PREFIXES = ("m.layers.0.q_proj", "m.layers.0.up_proj")
MODES = ("fedavg", "exact", "frozen-a")
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def rounds(draw: st.DrawFn, max_nodes: int = 4) -> tuple[list[ClientUpdate], int]:
    """A round of 1..max_nodes nodes, random shapes and ranks, with a shared A (all modes)."""
    n_nodes = draw(st.integers(1, max_nodes))
    rank = draw(st.integers(1, 3))
    dims = [(draw(st.integers(1, 7)), draw(st.integers(1, 7))) for _ in PREFIXES]
    counts = draw(st.lists(st.integers(1, 1000), min_size=n_nodes, max_size=n_nodes))
    shared = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a0 = [rng.normal(size=(rank, n_in)) for _, n_in in dims]
    updates = []
    for i, n in enumerate(counts):
        tensors: dict[str, np.ndarray] = {}
        for prefix, (n_out, n_in), a in zip(PREFIXES, dims, a0, strict=True):
            tensors[f"{prefix}.lora_A.weight"] = a if shared else rng.normal(size=(rank, n_in))
            tensors[f"{prefix}.lora_B.weight"] = rng.normal(size=(n_out, rank))
        updates.append(ClientUpdate(f"node-{i}", n, tensors))
    return updates, rank


def _modes(updates: list[ClientUpdate]) -> tuple[str, ...]:
    a_keys = [k for k in updates[0].tensors if "lora_A" in k]
    shared = all(np.array_equal(u.tensors[k], updates[0].tensors[k]) for u in updates
                 for k in a_keys)
    return MODES if shared else ("fedavg", "exact")


def _products(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {p: tensors[f"{p}.lora_B.weight"] @ tensors[f"{p}.lora_A.weight"] for p in PREFIXES}


def _gap_ok(updates: list[ClientUpdate], rank: int) -> bool:
    """The rank-r optimum is unique only when sigma_r > sigma_(r+1) (a clear gap)."""
    total = sum(u.num_examples for u in updates)
    for p in PREFIXES:
        mean = sum(u.num_examples / total * u.tensors[f"{p}.lora_B.weight"]
                   @ u.tensors[f"{p}.lora_A.weight"] for u in updates)
        s = np.linalg.svd(mean, compute_uv=False)
        if s.size > rank and s[rank - 1] - s[rank] < 1e-3 * max(s[0], 1e-300):
            return False
    return True


def _close(x: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> None:
    assert x.keys() == y.keys()
    for key in x:
        np.testing.assert_allclose(x[key], y[key], rtol=1e-7,
                                   atol=1e-9 * max(1.0, float(np.abs(y[key]).max())))


@PROPS
@given(rounds(), st.integers(2, 50))
def test_multiplying_every_count_by_k_changes_nothing(round_: tuple[list[ClientUpdate], int],
                                                      k: int) -> None:
    updates, rank = round_
    assume(_gap_ok(updates, rank))
    scaled = [ClientUpdate(u.node_id, k * u.num_examples, u.tensors) for u in updates]
    for mode in _modes(updates):
        base = make_aggregator(mode).aggregate(updates, scale=1.0)
        other = make_aggregator(mode).aggregate(scaled, scale=1.0)
        _close(_products(other.tensors), _products(base.tensors))
        assert abs(other.report.residual - base.report.residual) < 1e-7


@PROPS
@given(rounds(), st.randoms(use_true_random=False))
def test_the_order_of_clients_does_not_matter(round_: tuple[list[ClientUpdate], int],
                                              random: object) -> None:
    updates, rank = round_
    assume(_gap_ok(updates, rank))
    shuffled = list(updates)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    for mode in _modes(updates):
        base = make_aggregator(mode).aggregate(updates, scale=1.0)
        other = make_aggregator(mode).aggregate(shuffled, scale=1.0)
        _close(_products(other.tensors), _products(base.tensors))
        assert other.report.update_norms == base.report.update_norms


@PROPS
@given(rounds(max_nodes=1), st.floats(0.01, 100))
def test_a_single_client_is_returned_unchanged(round_: tuple[list[ClientUpdate], int],
                                               scale: float) -> None:
    updates, _ = round_
    for mode in MODES:
        result = make_aggregator(mode).aggregate(updates, scale=scale)
        for key, value in updates[0].tensors.items():
            np.testing.assert_array_equal(result.tensors[key], value)
        assert result.report.residual < 1e-12  # 0.0 up to QR rounding in fedavg's check
        assert result.report.fedavg_error is None or result.report.fedavg_error < 1e-12


@PROPS
@given(rounds())
def test_exact_never_does_worse_than_fedavg(round_: tuple[list[ClientUpdate], int]) -> None:
    # Eckart–Young: fedavg's product has rank <= r, so it cannot beat the rank-r optimum.
    updates, _ = round_
    report = make_aggregator("exact").aggregate(updates, scale=1.0).report
    assert report.fedavg_error is not None
    assert report.residual <= report.fedavg_error + 1e-9


@PROPS
@given(rounds(), st.data())
def test_a_shape_mismatch_names_the_node(round_: tuple[list[ClientUpdate], int],
                                         data: st.DataObject) -> None:
    updates, _ = round_
    assume(len(updates) >= 2)
    bad = data.draw(st.integers(1, len(updates) - 1))
    key = data.draw(st.sampled_from(sorted(updates[bad].tensors)))
    axis = 1 if "lora_A" in key else 0  # in of A, out of B: never the rank
    tensors = dict(updates[bad].tensors)
    shape = list(tensors[key].shape)
    shape[axis] += data.draw(st.integers(1, 3))
    tensors[key] = np.zeros(shape)
    updates[bad] = ClientUpdate(updates[bad].node_id, 1, tensors)
    for mode in MODES:
        try:
            make_aggregator(mode).aggregate(updates, scale=1.0)
        except AggregationError as exc:
            assert f"node node-{bad}: tensor {key}" in str(exc)
        else:
            raise AssertionError(f"{mode} accepted a shape mismatch in {key}")
