"""From selected trajectories to tokenized, loss-masked, weighted training examples.

Trajectories (CONTRIBUTING.md "Trajectory") are rendered with the base model's chat
template, tool calls and tool results included. Only assistant tokens carry loss: the
template marks assistant turns with ``{% generation %}`` and the tokenizer returns the mask.
Each example keeps its tier weight (DESIGN.md §5). Batches group examples of similar length
(length bucketing) so that little compute goes to padding.

Invariants
----------
T1. A token carries loss iff it was produced inside an assistant turn whose ``weight`` is
    not 0 (a weight-0 turn, from OpenAI fine-tuning files, is context only).
T2. ``split_heldout`` puts an id in the held-out set by a keyed hash of the id alone, so an
    id never moves between the sets as the tenant's data grows; held-out ids are never
    trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hermes_fed.privacy.surrogates import with_surrogates

ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass(frozen=True, slots=True)
class TrainingExample:
    """One selected trajectory with its training weight and quality tier."""

    trajectory: Mapping[str, Any]
    weight: float
    tier: str

    def __post_init__(self) -> None:
        if not isinstance(self.weight, int | float) or not math.isfinite(self.weight) or self.weight <= 0:
            raise ValueError(f"TrainingExample.weight must be finite and > 0, got {self.weight!r}")
        if not isinstance(self.trajectory, Mapping):
            raise ValueError(
                f"TrainingExample.trajectory must be a mapping, got {type(self.trajectory).__name__}"
            )


@dataclass(frozen=True, slots=True)
class PreferenceExample:
    """A (rejected, chosen) pair of trajectories for the same task (a retry, then accepted).

    ``hermes_fed.quality.preference.PreferencePair`` names the pair by ids; this record
    holds the two trajectories themselves, ready for DPO.
    """

    rejected: Mapping[str, Any]
    chosen: Mapping[str, Any]
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class TokenizedExample:
    """Token ids, the assistant-token mask (1 = carries loss) and the example weight."""

    trajectory_id: str
    input_ids: tuple[int, ...]
    assistant_mask: tuple[int, ...]
    weight: float
    tier: str
    truncated: bool

    @property
    def num_loss_tokens(self) -> int:
        return sum(self.assistant_mask)


@dataclass(frozen=True, slots=True)
class HeldoutSplit:
    """Trajectory ids to train on and ids kept for evaluation only (invariant T2)."""

    train: tuple[str, ...]
    heldout: tuple[str, ...]


class ManifestEntry(Protocol):
    """What a dataset-manifest item provides (``hermes_fed.quality.selection.ManifestItem``)."""

    @property
    def trajectory_id(self) -> str: ...
    @property
    def tier(self) -> str: ...
    @property
    def weight(self) -> float: ...


def examples_from_manifest(
    items: Iterable[ManifestEntry], trajectories: Mapping[str, Mapping[str, Any]]
) -> list[TrainingExample]:
    """Join a selection manifest's items with their trajectories (by id), keeping its order.

    Raises ``ValueError`` naming the first id without a trajectory.
    """
    out = []
    for item in items:
        if item.trajectory_id not in trajectories:
            raise ValueError(f"manifest item {item.trajectory_id}: no trajectory with that id")
        out.append(TrainingExample(trajectories[item.trajectory_id], float(item.weight), item.tier))
    return out


def _field_error(trajectory: Mapping[str, Any], where: str, problem: str) -> ValueError:
    # Names the field only: trajectory text may be personal (CONVENTIONS.md, Errors).
    return ValueError(f"trajectory {trajectory.get('trajectory_id', '?')}: {where} {problem}")


def to_chat(trajectory: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Convert a hermes-fed trajectory to Hugging Face chat messages and tools.

    Tool calls become ``{"id", "type": "function", "function": {"name", "arguments"}}`` and
    tools ``{"type": "function", "function": {...}}``, the shapes model chat templates expect.
    """
    messages = trajectory.get("messages")
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise _field_error(trajectory, "messages", "must be a non-empty list")
    chat: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in ROLES:
            raise _field_error(trajectory, f"messages[{i}].role", f"must be one of {sorted(ROLES)}")
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise _field_error(trajectory, f"messages[{i}].content", "must be a string")
        out: dict[str, Any] = {"role": message["role"], "content": content}
        if message["role"] == "assistant" and message.get("tool_calls"):
            calls = []
            for j, call in enumerate(message["tool_calls"]):
                args = call.get("arguments", {}) if isinstance(call, Mapping) else None
                if not isinstance(args, Mapping) or not isinstance(call.get("name"), str):
                    raise _field_error(
                        trajectory,
                        f"messages[{i}].tool_calls[{j}]",
                        "needs a string name and JSON-object arguments",
                    )
                calls.append(
                    {
                        "id": call.get("id", f"call_{j}"),
                        "type": "function",
                        "function": {"name": call["name"], "arguments": dict(args)},
                    }
                )
            out["tool_calls"] = calls
        if message["role"] == "tool":
            out["tool_call_id"] = message.get("tool_call_id", "")
            out["name"] = message.get("name", "")
        chat.append(out)
    tools = [{"type": "function", "function": dict(t)} for t in trajectory.get("tools") or ()]
    return chat, tools


def _mask_runs(mask: Sequence[int]) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of 1s in ``mask``."""
    runs: list[tuple[int, int]] = []
    start = None
    for index, bit in enumerate((*mask, 0)):
        if bit and start is None:
            start = index
        elif not bit and start is not None:
            runs.append((start, index))
            start = None
    return runs


def _mask_weightless_turns(mask: list[int], weights: Sequence[Any],
                           trajectory: Mapping[str, Any]) -> list[int]:
    """Clear the loss mask of assistant turns with ``weight`` 0 (OpenAI fine-tuning's
    per-message weight): they stay in the input as context. Each assistant turn must render
    as its own ``{% generation %}`` block (ours does: the turn's header and the newline
    after it lie outside), so the k-th run of the mask is the k-th assistant turn; a
    template that merges or splits them is refused rather than guessed at."""
    runs = _mask_runs(mask)
    if len(runs) != len(weights):
        raise _field_error(trajectory, "messages",
                           f"have per-turn weights, but the chat template renders "
                           f"{len(runs)} generation blocks for {len(weights)} assistant turns")
    out = list(mask)
    for (start, end), weight in zip(runs, weights, strict=True):
        if weight == 0:
            out[start:end] = [0] * (end - start)
    return out


def tokenize_trajectory(
    tokenizer: Any, trajectory: Mapping[str, Any], *, max_length: int, weight: float = 1.0, tier: str = "",
    surrogates: bool = True,
) -> TokenizedExample:
    """Render one trajectory with the chat template and return ids + assistant mask.

    With ``surrogates`` (``LoraTrainingConfig.surrogates``, on by default) the log's
    placeholders (``<PERSON_1>``) are rendered as made-up values of their type
    (:mod:`hermes_fed.privacy.surrogates`): the model trains and is evaluated on text shaped
    like the raw requests it serves, and still on no real value.
    """
    messages, tools = to_chat(with_surrogates(trajectory) if surrogates else trajectory)
    if "generation" not in (tokenizer.chat_template or ""):
        raise ValueError(
            "the tokenizer's chat template has no {% generation %} marks, so "
            "assistant tokens cannot be masked; use a template that has them"
        )
    rendered = tokenizer.apply_chat_template(
        messages,
        tools=tools or None,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ids = list(rendered["input_ids"])
    mask = [int(m) for m in rendered["assistant_masks"]]
    weights = [m.get("weight", 1) for m in trajectory["messages"] if m.get("role") == "assistant"]
    if 0 in weights:
        mask = _mask_weightless_turns(mask, weights, trajectory)
    truncated = len(ids) > max_length
    return TokenizedExample(
        trajectory_id=str(trajectory.get("trajectory_id", "")),
        input_ids=tuple(ids[:max_length]),
        assistant_mask=tuple(mask[:max_length]),
        weight=float(weight),
        tier=tier,
        truncated=truncated,
    )


def build_dataset(
    tokenizer: Any, examples: Iterable[TrainingExample], *, max_length: int, surrogates: bool = True
) -> list[TokenizedExample]:
    """Tokenize selected examples; examples left without assistant tokens are dropped."""
    out = []
    for example in examples:
        tokenized = tokenize_trajectory(
            tokenizer, example.trajectory, max_length=max_length, weight=example.weight, tier=example.tier,
            surrogates=surrogates,
        )
        # The first token is never a target (nothing predicts it), so it cannot carry loss.
        if sum(tokenized.assistant_mask[1:]) > 0:
            out.append(tokenized)
    return out


def length_buckets(
    lengths: Sequence[int], batch_size: int, seed: int, bucket_factor: int = 16
) -> list[list[int]]:
    """Batches of indices with similar lengths, in a seeded random order.

    Indices are shuffled, cut into windows of ``batch_size * bucket_factor``, sorted by
    length inside each window and cut into batches; the batch order is shuffled again.
    Every index appears exactly once.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * bucket_factor
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[TokenizedExample], pad_id: int) -> dict[str, np.ndarray]:
    """Right-pad a batch: ``input_ids``, ``attention_mask`` and per-token ``loss_weights``.

    ``loss_weights[i, t]`` is the weight of predicting token ``t`` of example ``i`` (the
    example weight where the token is an assistant token, else 0); position 0 is always 0.
    """
    width = max(len(e.input_ids) for e in examples)
    ids = np.full((len(examples), width), pad_id, dtype=np.int64)
    attention = np.zeros((len(examples), width), dtype=np.int64)
    weights = np.zeros((len(examples), width), dtype=np.float32)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = example.input_ids
        attention[row, :n] = 1
        weights[row, :n] = np.asarray(example.assistant_mask, dtype=np.float32) * example.weight
        weights[row, 0] = 0.0
    return {"input_ids": ids, "attention_mask": attention, "loss_weights": weights}


def split_heldout(trajectory_ids: Iterable[str], fraction: float, seed: int) -> HeldoutSplit:
    """Deterministic per-tenant held-out split by a keyed hash of each id (invariant T2).

    An id is held out iff ``sha256(f"{seed}:{id}")`` read as a fraction of 2**64 is below
    ``fraction``. Order of the input is kept in both outputs; duplicates are removed.
    """
    if not isinstance(fraction, int | float) or not 0.0 <= fraction < 1.0:
        raise ValueError(f"split_heldout: fraction must be in [0, 1), got {fraction!r}")
    train: list[str] = []
    heldout: list[str] = []
    seen: set[str] = set()
    for tid in trajectory_ids:
        if tid in seen:
            continue
        seen.add(tid)
        digest = hashlib.sha256(f"{seed}:{tid}".encode()).digest()
        (heldout if int.from_bytes(digest[:8], "big") < fraction * 2**64 else train).append(tid)
    return HeldoutSplit(tuple(train), tuple(heldout))


def dataset_sha256(examples: Iterable[TokenizedExample]) -> str:
    """Fingerprint of a tokenized dataset (ids, masks, weights), for checkpoints/manifests."""
    h = hashlib.sha256()
    for e in examples:
        h.update(
            json.dumps(
                [e.trajectory_id, e.input_ids, e.assistant_mask, e.weight], separators=(",", ":")
            ).encode()
        )
    return h.hexdigest()
