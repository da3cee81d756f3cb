"""Reading a round's adapters: pair the LoRA factors, check every tensor, refuse bad input.

Every check names the node (``global`` for the previous global adapter) and the tensor, and
raises :class:`~hermes_fed.errors.AggregationError` before anything is combined.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hermes_fed.errors import AggregationError

from .records import ClientUpdate

Matrix = NDArray[np.float64]
GLOBAL = "global"

# peft state-dict names (adapter name stripped): Linear layers carry `.lora_A.weight`,
# Embedding layers carry bare `.lora_embedding_A` parameters; both are ΔW = B @ A (transposed
# for embeddings, which does not change any norm or mean).
_LORA_KEY = re.compile(r"^(?P<prefix>.+)\.lora_(?P<emb>embedding_)?(?P<factor>[AB])"
                       r"(?P<weight>\.weight)?$")


def is_lora_a(key: str) -> bool:
    """Whether ``key`` names a LoRA A factor (``lora_A`` or ``lora_embedding_A``)."""
    match = _LORA_KEY.match(key)
    return match is not None and match["factor"] == "A"


def a_key_of(key: str) -> str | None:
    """The A factor's key beside a B factor's key (None when ``key`` is not a LoRA B)."""
    match = _LORA_KEY.match(key)
    if match is None or match["factor"] != "B":
        return None
    return f"{match['prefix']}.lora_{match['emb'] or ''}A{match['weight'] or ''}"


@dataclass(frozen=True, slots=True)
class LoraPair:
    """The two factor keys of one adapted module."""

    prefix: str
    a_key: str
    b_key: str


@dataclass(frozen=True, slots=True)
class AdapterLayout:
    """An adapter's LoRA pairs and its other (dense) tensors, such as ``modules_to_save``."""

    pairs: tuple[LoraPair, ...]
    dense: tuple[str, ...]

    @property
    def a_keys(self) -> frozenset[str]:
        return frozenset(p.a_key for p in self.pairs)


def adapter_layout(keys: Iterable[str]) -> AdapterLayout:
    """Pair ``…lora_A…`` with ``…lora_B…`` keys; every other key is a dense tensor."""
    a_keys: dict[tuple[str, str, str], str] = {}
    b_keys: dict[tuple[str, str, str], str] = {}
    dense: list[str] = []
    for key in sorted(set(keys)):
        match = _LORA_KEY.match(key)
        if match is None:
            dense.append(key)
            continue
        ident = (match["prefix"], match["emb"] or "", match["weight"] or "")
        (a_keys if match["factor"] == "A" else b_keys)[ident] = key
    for ident in a_keys.keys() ^ b_keys.keys():
        lone = a_keys.get(ident) or b_keys[ident]
        raise AggregationError(f"tensor {lone} has no matching LoRA factor "
                               "(every lora_A needs its lora_B and vice versa)")
    pairs = tuple(LoraPair(ident[0], a_keys[ident], b_keys[ident]) for ident in sorted(a_keys))
    return AdapterLayout(pairs, tuple(dense))


@dataclass(frozen=True, slots=True)
class PreparedRound:
    """A checked round: float64 tensors per node (same keys for all) and normalised weights."""

    node_ids: tuple[str, ...]
    counts: tuple[int, ...]
    weights: Matrix
    layout: AdapterLayout
    tensors: tuple[dict[str, Matrix], ...]
    previous: dict[str, Matrix] | None
    dtypes: dict[str, np.dtype[Any]]


def _finite_array(owner: str, key: str, value: Any) -> tuple[Matrix, np.dtype[Any]]:
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise AggregationError(f"node {owner}: tensor {key} is not an array ({exc})") from exc
    if array.dtype.kind not in "fiu":
        raise AggregationError(f"node {owner}: tensor {key} has dtype {array.dtype}, "
                               "expected a real number dtype")
    as_float = array.astype(np.float64)
    if not np.all(np.isfinite(as_float)):
        raise AggregationError(f"node {owner}: tensor {key} holds NaN or inf; the round "
                               "stops (check that node's training loss)")
    return as_float, array.dtype


def _check_keys(owner: str, keys: Iterable[str], expected: frozenset[str],
                optional: frozenset[str]) -> None:
    have = frozenset(keys)
    if extra := sorted(have - expected):
        raise AggregationError(f"node {owner}: tensor {extra[0]} is not in the round's adapter "
                               f"({len(extra)} unexpected tensor(s))")
    if missing := sorted(expected - optional - have):
        raise AggregationError(f"node {owner}: tensor {missing[0]} is missing "
                               f"({len(missing)} missing tensor(s))")


def _check_shapes(layout: AdapterLayout, owners: Sequence[str],
                  tensors: Sequence[Mapping[str, Matrix]]) -> None:
    """Same ``in``/``out`` and dense shapes everywhere; ``A``'s rows match ``B``'s columns."""
    for pair in layout.pairs:
        first: dict[str, tuple[str, int]] = {}
        for owner, t in zip(owners, tensors, strict=True):
            for key, axis, what in ((pair.a_key, 1, "in"), (pair.b_key, 0, "out")):
                if key not in t:
                    continue
                if t[key].ndim != 2:
                    raise AggregationError(f"node {owner}: tensor {key} has shape "
                                           f"{t[key].shape}, expected a matrix")
                size = t[key].shape[axis]
                ref_owner, ref = first.setdefault(what, (owner, size))
                if size != ref:
                    raise AggregationError(
                        f"node {owner}: tensor {key} has shape {t[key].shape}, its {what} "
                        f"dimension {size} differs from node {ref_owner}'s {ref}")
            if pair.a_key in t and t[pair.a_key].shape[0] != t[pair.b_key].shape[1]:
                raise AggregationError(
                    f"node {owner}: tensor {pair.a_key} has rank {t[pair.a_key].shape[0]} "
                    f"but {pair.b_key} has rank {t[pair.b_key].shape[1]}")
    for key in layout.dense:
        shapes = {owner: t[key].shape for owner, t in zip(owners, tensors, strict=True)}
        if len(set(shapes.values())) > 1:
            ref_owner, ref_shape = next(iter(shapes.items()))
            owner, shape = next((o, s) for o, s in shapes.items() if s != ref_shape)
            raise AggregationError(f"node {owner}: tensor {key} has shape {shape}, node "
                                   f"{ref_owner} has {ref_shape}")


def _share_a(layout: AdapterLayout, owners: Sequence[str],
             tensors: Sequence[dict[str, Matrix]]) -> None:
    """FFA-LoRA: one identical A everywhere; fill it in where a node sent only B."""
    for pair in layout.pairs:
        carriers = [(o, t[pair.a_key]) for o, t in zip(owners, tensors, strict=True)
                    if pair.a_key in t]
        if not carriers:
            raise AggregationError(f"frozen-a needs the shared tensor {pair.a_key}: no node "
                                   "and no previous global adapter carries it")
        ref_owner, ref = carriers[0]
        for owner, a in carriers[1:]:
            if a.shape != ref.shape or not np.array_equal(a, ref):
                raise AggregationError(
                    f"node {owner}: tensor {pair.a_key} differs from node {ref_owner}'s; "
                    "frozen-a needs the same A everywhere (same frozen_a_seed, A not trained)")
        for owner, t in zip(owners, tensors, strict=True):
            t.setdefault(pair.a_key, ref)
            if t[pair.b_key].shape[1] != ref.shape[0]:
                raise AggregationError(
                    f"node {owner}: tensor {pair.b_key} has rank {t[pair.b_key].shape[1]} "
                    f"but the shared {pair.a_key} has rank {ref.shape[0]}")


def _majority_keys(updates: Sequence[ClientUpdate], shared_a: bool) -> set[str]:
    """The key set most nodes carry (the first node's on a tie), so the odd node is named.

    With ``shared_a`` the A keys are left out of the vote (a node may omit them) and the
    union of the A keys seen is added back.
    """
    def vote(u: ClientUpdate) -> frozenset[str]:
        return frozenset(k for k in u.tensors if not (shared_a and is_lora_a(k)))

    keys, _ = Counter(vote(u) for u in updates).most_common(1)[0]
    if shared_a:
        return set(keys) | {k for u in updates for k in u.tensors if is_lora_a(k)}
    return set(keys)


def prepare_round(updates: Sequence[ClientUpdate], previous: Mapping[str, Any] | None, *,
                  shared_a: bool = False) -> PreparedRound:
    """Check a round's updates and convert them to float64.

    The expected keys are the previous global adapter's, else those most nodes carry.
    With ``shared_a`` (frozen-a), a node may omit its ``lora_A`` tensors; they must be
    identical wherever present and are filled in from a node or the previous adapter.
    """
    if not updates:
        raise AggregationError("empty round: no client updates to aggregate")
    node_ids = tuple(u.node_id for u in updates)
    if len(set(node_ids)) != len(node_ids):
        twice = next(n for n in node_ids if node_ids.count(n) > 1)
        raise AggregationError(f"node {twice} sent more than one update in this round")
    if GLOBAL in node_ids:
        raise AggregationError(f"node id {GLOBAL!r} is reserved for the previous adapter")
    counts = tuple(u.num_examples for u in updates)
    total = sum(counts)
    if total <= 0:
        raise AggregationError("every node reported num_examples = 0; nothing to weight by")

    keys = set(previous) if previous is not None else _majority_keys(updates, shared_a)
    layout = adapter_layout(keys)
    expected = frozenset(keys)
    optional = layout.a_keys if shared_a else frozenset()

    owners: list[str] = []
    converted: list[dict[str, Matrix]] = []
    dtypes: dict[str, np.dtype[Any]] = {}
    sources: list[tuple[str, Mapping[str, Any]]] = [(u.node_id, u.tensors) for u in updates]
    if previous is not None:
        sources.insert(0, (GLOBAL, previous))
    for owner, raw in sources:
        _check_keys(owner, raw, expected, optional)
        tensors: dict[str, Matrix] = {}
        for key in sorted(raw):
            tensors[key], dtype = _finite_array(owner, key, raw[key])
            # results keep a float input's dtype (float32 from peft); integers become float64
            dtypes.setdefault(key, dtype if dtype.kind == "f" else np.dtype(np.float64))
        owners.append(owner)
        converted.append(tensors)
    _check_shapes(layout, owners, converted)
    if shared_a:
        _share_a(layout, owners, converted)

    prev = converted.pop(0) if previous is not None else None
    weights = np.asarray(counts, dtype=np.float64) / float(total)
    return PreparedRound(node_ids, counts, weights, layout, tuple(converted), prev, dtypes)


def rank_of(rnd: PreparedRound, pair: LoraPair) -> int | None:
    """The clients' common rank of a module, or None when the ranks differ."""
    ranks = {t[pair.a_key].shape[0] for t in rnd.tensors}
    return ranks.pop() if len(ranks) == 1 else None
