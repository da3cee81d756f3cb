"""MinHash signatures and LSH banding for near-duplicate removal.

MinHash (Broder, 1997, "On the resemblance and containment of documents"): for ``k``
universal hash functions ``h_i(x) = (a_i x + b_i) mod p`` over the shingle set ``S``, the
probability that ``min h_i(S) == min h_i(T)`` equals the Jaccard similarity of ``S`` and
``T``. LSH banding (Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3.4)
finds candidate pairs without comparing all of them.

The arithmetic is exact in ``uint64``: with the Mersenne prime ``p = 2^31 - 1`` and
``x, a, b < p``, ``a x + b < 2^62`` never overflows before the reduction. (A larger prime
with small ``a`` would be wrong, not just slow: ``a x + b`` then rarely wraps, ``h`` stays
nearly monotone in ``x`` and every permutation picks the same minimum.) Parameters
derive from BLAKE2b of a fixed label, so signatures are stable across processes, machines
and numpy versions (they are stored in read models).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

MERSENNE_31 = np.uint64((1 << 31) - 1)
_SPACE = re.compile(r"\s+")
U64 = npt.NDArray[np.uint64]


def normalise(text: str) -> str:
    """Case-fold and collapse whitespace, so formatting alone never makes texts differ."""
    return _SPACE.sub(" ", text.casefold()).strip()


def shingle_hashes(text: str, size: int) -> U64:
    """32-bit hashes of the distinct ``size``-byte shingles of the normalised UTF-8 text.

    A text shorter than ``size`` bytes is one shingle; the empty text has none.
    """
    data = np.frombuffer(normalise(text).encode("utf-8"), dtype=np.uint8)
    if data.size == 0:
        return np.empty(0, dtype=np.uint64)
    if data.size < size:
        size = int(data.size)
    windows = np.lib.stride_tricks.sliding_window_view(data, size).astype(np.uint64)
    # FNV-1a over each window, vectorised across windows (32-bit, exact in uint64).
    h = np.full(windows.shape[0], 2166136261, dtype=np.uint64)
    prime = np.uint64(16777619)
    mask = np.uint64(0xFFFFFFFF)
    for j in range(size):
        h = ((h ^ windows[:, j]) * prime) & mask
    return np.unique(h)


@functools.lru_cache(maxsize=8)
def _parameters(permutations: int) -> tuple[U64, U64]:
    raw = hashlib.blake2b(b"hermes-fed minhash v1", digest_size=64).digest()
    stream = b""
    counter = 0
    while len(stream) < 8 * permutations:
        stream += hashlib.blake2b(raw + counter.to_bytes(4, "big"), digest_size=64).digest()
        counter += 1
    words = np.frombuffer(stream[: 8 * permutations], dtype="<u4").astype(np.uint64)
    a = words[0::2] % (MERSENNE_31 - np.uint64(1)) + np.uint64(1)  # 1 <= a < p
    b = words[1::2] % MERSENNE_31
    return a.reshape(-1, 1), b.reshape(-1, 1)


def minhash_signature(text: str, permutations: int = 64, shingle_size: int = 5) -> U64:
    """The MinHash signature of ``text``: ``permutations`` values in [0, 2^31 - 1]."""
    x = shingle_hashes(text, shingle_size) % MERSENNE_31
    if x.size == 0:
        return np.full(permutations, MERSENNE_31, dtype=np.uint64)
    a, b = _parameters(permutations)
    values = (a * x.reshape(1, -1) + b) % MERSENNE_31
    signature: U64 = values.min(axis=1)
    return signature


def signature_bytes(signature: U64) -> bytes:
    return signature.astype("<u8").tobytes()


def signature_from_bytes(raw: bytes) -> U64:
    if len(raw) % 8:
        raise ValueError(f"a MinHash signature is a whole number of uint64, got {len(raw)} bytes")
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)


def estimated_jaccard(left: U64, right: U64) -> float:
    """The share of equal signature positions: an unbiased estimate of Jaccard similarity."""
    if left.shape != right.shape:
        raise ValueError(f"signature shapes differ: {left.shape} vs {right.shape}")
    return float(np.mean(left == right))


def remove_near_duplicates(items: Iterable[tuple[str, U64]], threshold: float,
                           bands: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Greedy near-duplicate removal in the given priority order.

    Each item is kept unless an already kept item shares an LSH band with it and their
    estimated Jaccard similarity is ``>= threshold``. Returns the kept ids (in order) and
    ``(dropped, kept_duplicate_of)`` pairs.
    """
    buckets: dict[tuple[int, bytes], list[int]] = {}
    kept_ids: list[str] = []
    kept_sigs: list[U64] = []
    dropped: list[tuple[str, str]] = []
    for item_id, signature in items:
        rows = signature.size // bands
        keys = [(band, signature[band * rows:(band + 1) * rows].tobytes())
                for band in range(bands)]
        match: int | None = None
        seen: set[int] = set()
        for key in keys:
            for index in buckets.get(key, ()):
                if index in seen:
                    continue
                seen.add(index)
                if estimated_jaccard(signature, kept_sigs[index]) >= threshold:
                    match = index
                    break
            if match is not None:
                break
        if match is not None:
            dropped.append((item_id, kept_ids[match]))
            continue
        index = len(kept_ids)
        kept_ids.append(item_id)
        kept_sigs.append(signature)
        for key in keys:
            buckets.setdefault(key, []).append(index)
    return kept_ids, dropped


def pairwise_jaccard(signatures: Sequence[U64]) -> npt.NDArray[np.float64]:
    """All-pairs estimated Jaccard (the brute-force reference for tests and reports)."""
    stack = np.stack(list(signatures))
    return np.asarray((stack[:, None, :] == stack[None, :, :]).mean(axis=2), dtype=np.float64)
