"""A generic tool-use base model for the simulator, pre-trained inside the project.

A randomly initialised tiny model cannot be taught tool calls by a LoRA adapter in a
CPU-sized budget (measured: loss 8.2 -> 6.3 after 100 steps, no well-formed call), and no
package ships causal-LM weights (FIELD_NOTES.md). So the simulator's base model is the
tiny model pre-trained (all weights) on a *generic* tool-use corpus: made-up tools with
made-up parameters whose values the user states in order, a tool result, and a short
final reply. The corpus shares no tool, parameter name or phrasing with the task families
of :mod:`hermes_fed.sim.tasks`, so what the base knows is the chat format and copying; the
families' tools, argument mapping and answer templates are left for the flywheel to learn.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hermes_fed.sim.tasks import FAMILIES, SYSTEM_PROMPT

_VERBS = ("get", "find", "fetch", "send", "check", "list", "open", "close", "create",
          "delete", "update", "count", "book", "cancel", "track", "rate")
_NOUNS = ("weather", "order", "ticket", "user", "invoice", "flight", "file", "report",
          "meeting", "parcel", "account", "song", "recipe", "room", "stock", "review")
_PARAMS = ("query", "city", "id", "amount", "name", "count", "code", "level", "color",
           "size", "page", "limit", "region", "owner", "label", "score")
_WORDS = ("paris", "red", "blue", "alpha", "north", "green", "large", "small", "omega",
          "delta", "tokyo", "berlin", "urgent", "daily", "gold", "silver")
_REPLIES = ("Result: {r}.", "It is {r}.", "Done: {r}.", "Here it is: {r}.")


@dataclass(frozen=True, slots=True)
class PretrainConfig:
    """Full-weight pre-training of the base on the generic corpus."""

    steps: int = field(default=1500, metadata={"help": "Optimizer steps."})
    batch_size: int = field(default=16, metadata={"help": "Documents per step."})
    lr: float = field(default=3e-3, metadata={"help": "AdamW learning rate (cosine decay)."})
    seed: int = field(default=0, metadata={"help": "Seeds the corpus and data order."})

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PretrainConfig.{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"PretrainConfig.lr must be > 0, got {self.lr!r}")


def _value(rng: random.Random) -> Any:
    """A value in one of the shapes tools take: integer, word, decimal, date, expression."""
    kind = rng.random()
    if kind < 0.3:
        return rng.randint(1, 999)
    if kind < 0.5:
        return rng.choice(_WORDS)
    if kind < 0.65:
        return round(rng.uniform(0, 999), 2)
    if kind < 0.8:
        return f"{rng.randint(1990, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return f"{rng.randint(1, 999)} {rng.choice('+-*/')} {rng.randint(1, 999)}"


def generic_trajectory(rng: random.Random, index: int) -> dict[str, Any]:
    """One made-up tool-use dialog in the trajectory shape (never a task family's tool)."""
    reserved = {f.tool_name for f in FAMILIES.values()}
    name = f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}"
    while name in reserved:  # pragma: no cover - the vocabularies do not overlap today
        name = f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}"
    params = rng.sample(_PARAMS, rng.randint(1, 3))
    values: dict[str, Any] = {p: _value(rng) for p in params}
    request = "Please {} the {} with {}.".format(
        name.split("_")[0], name.split("_")[1],
        " and ".join(f"{p} {v}" for p, v in values.items()))
    result: Any = rng.randint(1, 9999) if rng.random() < 0.7 else rng.choice(_WORDS)
    final = rng.choice(_REPLIES).format(r=result)
    return {
        "trajectory_id": f"pre-{index}",
        "task": request,
        "task_type": "generic",
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": request},
            {"role": "assistant", "content": "",
             "tool_calls": [{"id": "call_1", "name": name, "arguments": values}]},
            {"role": "tool", "tool_call_id": "call_1", "name": name,
             "content": json.dumps({"result": result})},
            {"role": "assistant", "content": final},
        ],
        "tools": [{"name": name, "description": f"{name.replace('_', ' ')}",
                   "parameters": {"type": "object",
                                  "properties": {p: {"type": "string"} for p in params},
                                  "required": list(params)}}],
        "final_response": final,
    }


def generic_corpus(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """``n`` generic tool-use dialogs (seeded)."""
    rng = random.Random(seed)
    for i in range(n):
        yield generic_trajectory(rng, i)


def pretrain_base(base_dir: str | Path, out_dir: str | Path,
                  config: PretrainConfig | None = None) -> dict[str, float]:
    """Pre-train every weight of ``base_dir`` on the generic corpus; save to ``out_dir``.

    The loss is the mean NLL of assistant tokens (the chat template's generation marks).
    Returns ``{"loss_first", "loss_last", "seconds"}``.
    """
    import math
    import time

    import torch

    from hermes_fed.training.adapter import load_base_model
    from hermes_fed.training.dataset import collate, tokenize_trajectory
    from hermes_fed.training.losses import token_logprobs, weighted_sft_loss

    cfg = config or PretrainConfig()
    torch.manual_seed(cfg.seed)
    model, tokenizer = load_base_model(base_dir, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(
            math.pi * min(s, cfg.steps) / cfg.steps)))
    corpus = generic_corpus(cfg.steps * cfg.batch_size, cfg.seed)
    started, losses = time.perf_counter(), []
    model.train()
    for _ in range(cfg.steps):
        batch_docs = [tokenize_trajectory(tokenizer, next(corpus), max_length=256)
                      for _ in range(cfg.batch_size)]
        batch = {k: torch.from_numpy(v) for k, v in
                 collate(batch_docs, tokenizer.pad_token_id).items()}
        logp, _, weights = token_logprobs(model, batch["input_ids"], batch["attention_mask"],
                                          batch["loss_weights"])
        loss = weighted_sft_loss(logp, weights)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"loss_first": losses[0], "loss_last": float(sum(losses[-10:]) / len(losses[-10:])),
            "seconds": time.perf_counter() - started}
