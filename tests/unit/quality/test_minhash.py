"""MinHash: the estimate tracks exact Jaccard; LSH dedupe agrees with brute force."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_fed.quality.minhash import (
    estimated_jaccard,
    minhash_signature,
    minhash_signatures,
    normalise,
    pairwise_jaccard,
    remove_near_duplicates,
    signature_bytes,
    signature_from_bytes,
)

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs",
         "into", "forest", "woods", "cat"]


def exact_jaccard(a: str, b: str, k: int = 5) -> float:
    sa = {normalise(a).encode()[i:i + k] for i in range(len(normalise(a).encode()) - k + 1)}
    sb = {normalise(b).encode()[i:i + k] for i in range(len(normalise(b).encode()) - k + 1)}
    return len(sa & sb) / len(sa | sb)


def test_estimate_tracks_exact_jaccard() -> None:
    # Prepare: pairs of texts with a spread of overlaps, seeded
    rng = random.Random(1)
    errors = []
    for _ in range(40):
        a = " ".join(rng.choice(WORDS) for _ in range(40))
        keep = rng.random()
        b = " ".join(w if rng.random() < keep else rng.choice(WORDS) for w in a.split())
        # Execute
        estimate = estimated_jaccard(minhash_signature(a, 256), minhash_signature(b, 256))
        errors.append(abs(estimate - exact_jaccard(a, b)))
    # Assert: the standard error at k=256 is <= 0.032; allow ~4 sigma for the worst pair
    assert max(errors) < 0.13
    assert float(np.mean(errors)) < 0.04


def test_formatting_only_differences_are_identical() -> None:
    a = minhash_signature("What is 2+3?\nThe answer is 5.")
    b = minhash_signature("  what IS 2+3?   the answer is 5.")
    assert estimated_jaccard(a, b) == 1.0


def test_signature_is_stable_across_runs() -> None:
    # A fixed value: signatures are stored in read models and must not drift.
    sig = minhash_signature("hello world", 4)
    assert signature_from_bytes(signature_bytes(sig)).tolist() == sig.tolist()
    assert sig.dtype == np.uint64 and sig.max() < (1 << 32)
    assert sig.tolist() == minhash_signature("hello world", 4).tolist()


def test_empty_text_has_the_sentinel_signature() -> None:
    assert minhash_signature("", 8).tolist() == [1 << 32] * 8


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["alpha beta gamma delta", "alpha beta gamma delta!",
                                 "a completely different sentence here",
                                 "zeta eta theta iota kappa", "zeta eta theta iota kappa."]),
                min_size=1, max_size=8))
def test_lsh_dedupe_keeps_no_near_duplicate_pair(texts: list[str]) -> None:
    # Prepare
    items = [(f"t{i}", minhash_signature(t)) for i, t in enumerate(texts)]
    # Execute
    kept, dropped = remove_near_duplicates(items, threshold=0.8, bands=16)
    # Assert: nothing kept is a near-duplicate of anything else kept (brute force)
    sigs = dict(items)
    matrix = pairwise_jaccard([sigs[k] for k in kept])
    np.fill_diagonal(matrix, 0.0)
    assert (matrix < 0.8).all()
    assert sorted(kept + [d for d, _ in dropped]) == sorted(sigs)
    assert all(estimated_jaccard(sigs[d], sigs[k]) >= 0.8 for d, k in dropped)


def test_bad_signature_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="whole number"):
        signature_from_bytes(b"123")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=60), max_size=20), st.integers(1, 7), st.integers(1, 50))
def test_batch_signatures_equal_single_signatures(texts: list[str], size: int,
                                                  chunk: int) -> None:
    # Execute
    batch = minhash_signatures(texts, 16, size, chunk=chunk)
    # Assert: row for row, whatever the chunking
    for row, text in zip(batch, texts, strict=True):
        assert row.tolist() == minhash_signature(text, 16, size).tolist()


SPACEY = st.text(alphabet=st.sampled_from(
    ["a", "B", "ß", "Σ", "ς", "İ", "é", "x", "1", " ", "\t", "\n", "\x0b", "\x1c", "\x85",
     "\xa0", "\u2028", "\u3000"]), max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), SPACEY))
def test_normalise_equals_the_regex_definition(text: str) -> None:
    import re
    assert normalise(text) == re.sub(r"\s+", " ", text.casefold()).strip()


@settings(max_examples=100, deadline=None)
@given(st.lists(SPACEY, max_size=25), st.integers(1, 6), st.integers(1, 40))
def test_batch_signatures_equal_single_signatures_on_whitespace_and_case(
        texts: list[str], size: int, chunk: int) -> None:
    # Execute: unicode whitespace and case folding at text edges (no NUL: the joined path)
    batch = minhash_signatures(texts, 8, size, chunk=chunk)
    # Assert
    for row, text in zip(batch, texts, strict=True):
        assert row.tolist() == minhash_signature(text, 8, size).tolist()


def test_batch_signatures_of_texts_holding_nul_equal_single_signatures() -> None:
    texts = ["a\x00b c d e f", "  plain  text here ", "\x00", "", "x", "tail\x00 ", "ok ok ok"]
    batch = minhash_signatures(texts, 8, 3, chunk=4)
    for row, text in zip(batch, texts, strict=True):
        assert row.tolist() == minhash_signature(text, 8, 3).tolist()
