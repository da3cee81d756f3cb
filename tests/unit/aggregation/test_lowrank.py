"""The factor-only linear algebra against dense numpy (Eckart–Young optimum, norms)."""

from __future__ import annotations

import numpy as np
import pytest

from hermes_fed.aggregation.lowrank import (
    difference_norm,
    product_norm,
    stack,
    tail_energy,
    truncated_product_svd,
)

from .reference import best_rank, rel

# (out, k, in, rank): tall, wide, k above out or in (QR of a wide factor), rank above k.
SHAPES = [
    (30, 6, 20, 3),
    (20, 6, 30, 4),
    (5, 12, 40, 3),
    (40, 12, 5, 2),
    (16, 4, 16, 8),
    (64, 24, 48, 8),
]


@pytest.mark.parametrize(("out", "k", "n_in", "rank"), SHAPES)
def test_truncated_product_svd_equals_dense_eckart_young_optimum(out: int, k: int, n_in: int,
                                                                 rank: int) -> None:
    # Prepare
    rng = np.random.default_rng(out * 1000 + k)
    b, a = rng.normal(size=(out, k)), rng.normal(size=(k, n_in))
    dense = b @ a
    # Execute
    b_new, a_new, s = truncated_product_svd(b, a, rank)
    # Assert
    assert b_new.shape == (out, rank) and a_new.shape == (rank, n_in)
    optimum = best_rank(dense, rank)
    assert np.linalg.norm(b_new @ a_new - optimum) <= 1e-9 * np.linalg.norm(dense)
    dense_s = np.linalg.svd(dense, compute_uv=False)
    np.testing.assert_allclose(s, dense_s[: s.size], rtol=1e-9, atol=1e-9 * dense_s[0])
    expected_tail = np.linalg.norm(dense - optimum)
    assert tail_energy(s, rank) == pytest.approx(expected_tail, rel=1e-7, abs=1e-9)


def test_truncated_product_svd_splits_singular_values_evenly() -> None:
    # Prepare
    rng = np.random.default_rng(1)
    b, a = rng.normal(size=(20, 6)), rng.normal(size=(6, 15))
    # Execute
    b_new, a_new, s = truncated_product_svd(b, a, 4)
    # Assert: column norms of B' and row norms of A' are both sqrt(sigma_j)
    np.testing.assert_allclose(np.linalg.norm(b_new, axis=0), np.sqrt(s[:4]), rtol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(a_new, axis=1), np.sqrt(s[:4]), rtol=1e-10)


def test_truncated_product_svd_pads_missing_directions_with_zeros() -> None:
    # Prepare: a product of rank 2 asked for rank 5
    rng = np.random.default_rng(2)
    b, a = rng.normal(size=(9, 2)), rng.normal(size=(2, 7))
    # Execute
    b_new, a_new, _ = truncated_product_svd(b, a, 5)
    # Assert
    assert rel(b_new @ a_new, b @ a) < 1e-12
    assert not np.any(b_new[:, 2:]) and not np.any(a_new[2:])


@pytest.mark.parametrize(("out", "k", "n_in"), [(8, 3, 5), (3, 8, 5), (5, 8, 3), (1, 1, 1)])
def test_product_norm_equals_dense_norm(out: int, k: int, n_in: int) -> None:
    rng = np.random.default_rng(k)
    b, a = rng.normal(size=(out, k)), rng.normal(size=(k, n_in))
    assert product_norm(b, a) == pytest.approx(np.linalg.norm(b @ a), rel=1e-12)


def test_difference_norm_of_equal_products_is_zero_and_of_others_dense() -> None:
    # Prepare: the same product written with two different factorisations
    rng = np.random.default_rng(3)
    b, a = rng.normal(size=(10, 3)), rng.normal(size=(3, 8))
    mix = rng.normal(size=(3, 3))
    b2, a2 = b @ mix, np.linalg.solve(mix, a)
    c, d = rng.normal(size=(10, 3)), rng.normal(size=(3, 8))
    # Execute / Assert
    assert difference_norm(b, a, b2, a2) < 1e-12 * np.linalg.norm(b @ a)
    assert difference_norm(b, a, c, d) == pytest.approx(np.linalg.norm(b @ a - c @ d), rel=1e-12)


def test_stack_is_the_weighted_sum_of_products() -> None:
    rng = np.random.default_rng(4)
    blocks = [(w, rng.normal(size=(6, r)), rng.normal(size=(r, 5)))
              for w, r in ((0.2, 2), (0.5, 3), (0.3, 1))]
    b, a = stack(blocks)
    assert b.shape == (6, 6) and a.shape == (6, 5)
    expected = sum(w * bi @ ai for w, bi, ai in blocks)
    assert rel(b @ a, expected) < 1e-14


def test_svd_falls_back_to_gesvd_when_gesdd_does_not_converge(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: gesdd's non-convergence is rare and data-dependent, so it is forced here;
    # the fallback itself (scipy's gesvd) is the real thing.
    rng = np.random.default_rng(5)
    b, a = rng.normal(size=(20, 6)), rng.normal(size=(6, 15))
    expected = truncated_product_svd(b, a, 4)

    def no_convergence(*args: object, **kwargs: object) -> None:
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(np.linalg, "svd", no_convergence)
    # Execute
    got = truncated_product_svd(b, a, 4)
    # Assert
    np.testing.assert_allclose(got[0] @ got[1], expected[0] @ expected[1], rtol=1e-10)
    np.testing.assert_allclose(got[2], expected[2], rtol=1e-10)
