"""MinHash signatures and LSH banding for near-duplicate removal.

MinHash (Broder, 1997, "On the resemblance and containment of documents"): for ``k``
universal hash functions ``h_i(x) = (a_i x + b_i) mod p`` over the shingle set ``S``, the
probability that ``min h_i(S) == min h_i(T)`` equals the Jaccard similarity of ``S`` and
``T``. LSH banding (Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3.4)
finds candidate pairs without comparing all of them.

The hash family is multiply-shift (Dietzfelbinger et al., 1997, "A reliable randomized
algorithm for the closest-pair problem"): ``h(x) = ((a x + b) mod 2^64) >> 32`` with random
64-bit ``a`` (odd) and ``b``, which numpy computes with wrapping ``uint64`` arithmetic and
no division (a ``mod p`` family costs several times more here). Shingle hashes are 32-bit
FNV-1a. Parameters derive from BLAKE2b of a fixed label, so signatures are stable across
processes, machines and numpy versions (they are stored in read models).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

EMPTY = np.uint64(1 << 32)  # above every hash value: the signature of a text without shingles
_SHIFT = np.uint64(32)
U64 = npt.NDArray[np.uint64]


def normalise(text: str) -> str:
    """Case-fold and collapse whitespace, so formatting alone never makes texts differ.

    ``str.split()`` splits on runs of the characters ``\\s`` matches (both use
    ``str.isspace``) and drops the edges: the same as ``re.sub(r"\\s+", " ", t).strip()``
    (tested), at a fraction of the cost.
    """
    return " ".join(text.casefold().split())


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
    return _distinct(h)


def _distinct(values: U64) -> U64:
    """Sorted distinct values (sort + mask: numpy 2's hash-based ``unique`` is slower here)."""
    values = np.sort(values)
    if values.size < 2:
        return values
    keep = np.empty(values.size, dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


@functools.lru_cache(maxsize=8)
def _parameters(permutations: int) -> tuple[U64, U64]:
    raw = hashlib.blake2b(b"hermes-fed minhash v1", digest_size=64).digest()
    stream = b""
    counter = 0
    while len(stream) < 16 * permutations:
        stream += hashlib.blake2b(raw + counter.to_bytes(4, "big"), digest_size=64).digest()
        counter += 1
    words = np.frombuffer(stream[: 16 * permutations], dtype="<u8").astype(np.uint64)
    a = words[0::2] | np.uint64(1)  # odd multiplier
    b = words[1::2]
    return a.reshape(-1, 1), b.reshape(-1, 1)


def minhash_signature(text: str, permutations: int = 64, shingle_size: int = 5) -> U64:
    """The MinHash signature of ``text``: ``permutations`` values in [0, 2^32)."""
    x = shingle_hashes(text, shingle_size)
    if x.size == 0:
        return np.full(permutations, EMPTY, dtype=np.uint64)
    a, b = _parameters(permutations)
    signature: U64 = (a * x.reshape(1, -1) + b).min(axis=1) >> _SHIFT
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


_SEPARATOR = "\x00"  # not whitespace, never produced by casefold, never a byte of other UTF-8


def _normalised_concat(joined: str) -> bytes:
    """``b"\\x00".join(normalise(t).encode("utf-8") for t in texts)`` from
    ``joined = "\\x00".join(texts)`` where no text holds a NUL, in a few passes over one
    string instead of calls per text (``casefold`` maps each character on its own and a NUL
    is no whitespace, so the two agree; tested)."""
    collapsed = " ".join(joined.casefold().split())
    # A text's edges now hold at most one space next to its separators: strip() them.
    return (collapsed.replace(" \x00", "\x00").replace("\x00 ", "\x00")
            .encode("utf-8"))


def minhash_signatures(texts: Sequence[str], permutations: int = 64, shingle_size: int = 5,
                       chunk: int = 1 << 14) -> U64:
    """Signatures of many texts at once, shape ``(len(texts), permutations)``.

    Equal row for row to :func:`minhash_signature` (tested), but vectorised across texts:
    the normalised texts are concatenated with NUL separators, FNV-1a runs once over every
    window of the concatenation, windows that hold a separator are dropped, and the rest
    are reduced per text with ``np.minimum.reduceat``, in chunks of ``chunk`` shingles
    (small enough for the ``permutations x chunk`` block to stay in cache). Repeated
    shingles of a text are not removed: a minimum over a multiset is the minimum over its
    set.
    """
    n = len(texts)
    out = np.full((n, permutations), EMPTY, dtype=np.uint64)
    if n == 0:
        return out
    joined = _SEPARATOR.join(texts)
    if joined.count(_SEPARATOR) != n - 1:  # rare: texts holding a NUL go one by one
        clean = [i for i, t in enumerate(texts) if _SEPARATOR not in t]
        out[clean] = minhash_signatures([texts[i] for i in clean], permutations,
                                        shingle_size, chunk)
        for k in sorted(set(range(n)) - set(clean)):
            out[k] = minhash_signature(texts[k], permutations, shingle_size)
        return out
    data = np.frombuffer(_normalised_concat(joined), dtype=np.uint8)
    separators = np.flatnonzero(data == 0)
    ends = np.append(separators, data.size)
    lengths = ends - np.concatenate(([0], separators + 1))
    for i in np.flatnonzero((lengths > 0) & (lengths < shingle_size)):
        out[i] = minhash_signature(texts[int(i)], permutations, shingle_size)  # one shingle
    total = data.size - shingle_size + 1
    if total <= 0:
        return out
    h = np.full(total, 2166136261, dtype=np.uint64)
    prime, mask = np.uint64(16777619), np.uint64(0xFFFFFFFF)
    for j in range(shingle_size):
        np.bitwise_xor(h, data[j:j + total], out=h)
        np.multiply(h, prime, out=h)
        np.bitwise_and(h, mask, out=h)
    # A window [p, p + size) lies inside one text iff no separator starts in it; the
    # windows left are in text order, max(length - size + 1, 0) of them per text.
    inside = np.ones(total, dtype=bool)
    for k in range(shingle_size):
        hit = separators - k
        inside[hit[(hit >= 0) & (hit < total)]] = False
    x = h[inside]
    if x.size == 0:
        return out
    seg = np.repeat(np.arange(n, dtype=np.int64), np.maximum(lengths - shingle_size + 1, 0))
    a, b = _parameters(permutations)
    buffer = np.empty((permutations, min(chunk, x.size)), dtype=np.uint64)
    for lo in range(0, x.size, chunk):
        hi = min(lo + chunk, x.size)
        values = buffer[:, : hi - lo]
        # In place (2-3x faster than temporaries); the shift is monotone, so it is applied
        # to the minima only: min(v) >> 32 == min(v >> 32).
        np.multiply(a, x[lo:hi].reshape(1, -1), out=values)
        np.add(values, b, out=values)
        part = seg[lo:hi]
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(part)) + 1))
        reduced = np.minimum.reduceat(values, bounds, axis=1) >> _SHIFT
        rows = part[bounds]
        out[rows] = np.minimum(out[rows], reduced.T)
    return out
