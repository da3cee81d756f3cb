"""A generic tool-use base model for the simulator, pre-trained inside the project.

A randomly initialised tiny model cannot be taught tool calls by a LoRA adapter in a
CPU-sized budget (measured: loss 8.2 -> 6.3 after 100 steps, no well-formed call), and no
package ships causal-LM weights (FIELD_NOTES.md). So the simulator's base model is the
tiny model pre-trained (all weights) on a *generic* tool-use corpus: made-up tools with
made-up parameters whose values the user states in order, a tool result, and a short
final reply. The corpus shares no tool, parameter name or phrasing with the task families
of :mod:`examples.flywheel.tasks`, so what the base knows is the chat format and copying; the
families' tools, argument mapping and answer templates are left for the flywheel to learn.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.flywheel.tasks import FAMILIES, SYSTEM_PROMPT

log = logging.getLogger(__name__)

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
    corpus: int = field(default=2, metadata={
        "help": "Generic corpus version (1: keyed values in order; 2: varied; 3: v2 plus "
                "tools named only in the schema, see generic_trajectory)."})
    max_length: int = field(default=320, metadata={"help": "Tokens per document (truncated)."})
    echo: float = field(default=0.3, metadata={
        "help": "Share of tool-free dialogs whose reply repeats the user's span (copying)."})

    def __post_init__(self) -> None:
        if self.corpus not in (1, 2, 3):
            raise ValueError(f"PretrainConfig.corpus must be 1, 2 or 3, got {self.corpus!r}")
        if not 0.0 <= self.echo < 1.0:
            raise ValueError(f"PretrainConfig.echo must be in [0, 1), got {self.echo!r}")
        for name in ("steps", "batch_size", "max_length"):
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


def _result(rng: random.Random) -> Any:
    """A tool result: integer (maybe negative), word, decimal or date."""
    kind = rng.random()
    if kind < 0.45:
        return rng.randint(-999, 9999)
    if kind < 0.6:
        return rng.choice(_WORDS)
    if kind < 0.8:
        return round(rng.uniform(0, 9999), 2)
    return f"{rng.randint(1990, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _json_type(value: Any) -> str:
    return "integer" if isinstance(value, int) else "number" if isinstance(value, float) \
        else "string"


def _request_v1(rng: random.Random, name: str, values: dict[str, Any]) -> str:
    """The first corpus: "Please <verb> the <noun> with <p> <v> and <p> <v>." in order."""
    verb, noun = name.split("_")
    return "Please {} the {} with {}.".format(
        verb, noun, " and ".join(f"{p} {v}" for p, v in values.items()))


def _request_v2(rng: random.Random, name: str, values: dict[str, Any]) -> str:
    """Varied phrasing: parameters named in any order and style, sometimes after the value,
    and sometimes a trailing aside with distracting numbers (as users add contact details)."""
    verb, noun = name.split("_")
    items = list(values.items())
    if rng.random() < 0.5:
        rng.shuffle(items)
    parts = [rng.choice(_STATE).format(p=p, v=v) for p, v in items]
    text = rng.choice(_ASK).format(verb=verb, noun=noun, Verb=verb.capitalize(),
                                   args=" and ".join(parts))
    if rng.random() < 0.3:
        text += " " + rng.choice(_ASIDES).format(n=rng.randint(1000, 9999))
    return text


_STATE = ("{p} {v}", "{p} {v}", "{p}: {v}", "{p} = {v}", "{p} of {v}", "{v} as {p}",
          "{v} for {p}")
_ASK = ("Please {verb} the {noun} with {args}.", "{Verb} {noun} for {args}.",
        "Can you {verb} the {noun}? Use {args}.", "I need to {verb} a {noun}: {args}.",
        "{Verb} the {noun}, {args}.")
_ASIDES = ("Call me at +1 202 555 {n}.", "Thanks, ref {n}.", "My desk is {n}.")
_REPLIES_V2 = ("Result: {r}.", "It is {r}.", "Done: {r}.", "Here it is: {r}.",
               "The {noun} is {r}.", "The {noun} for {v} is {r}.", "{v} gives {r}.",
               "For {v} the answer is {r}.", "With {args} it is {r}.")


# Corpus v3: made-up words for tools and parameters that appear only in the schema, so
# the base must copy the tool's name and keys from the tool list (as every task family's
# call does: "What is 583 - 868?" -> calculator(expression=...)), not from the request.
_SYLLABLES = (*(c + v for c in "bcdfgklmnprstvz" for v in "aeiou"),
              "an", "er", "in", "on", "or", "ul", "ex", "at", "it", "us")
_BARE = ("What is {vals}?", "Do {vals}, please.", "Take {vals}.", "I have {vals}.",
         "Run it on {vals}.", "Now {vals}, please.", "Work out {vals}.", "Handle {vals} for me.")
_JOIN = (" and ", ", ", " with ", " to ", " then ")


def _made_up_word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))


def _schema_named(rng: random.Random, reserved: set[str]) -> tuple[str, list[str]]:
    """A made-up tool name and 1-3 parameter keys (made-up words, some common keys)."""
    name = "_".join(_made_up_word(rng) for _ in range(rng.randint(1, 2)))
    while name in reserved:  # pragma: no cover - syllable words never spell a family tool
        name = _made_up_word(rng)
    params: list[str] = []
    wanted = rng.randint(1, 3)
    while len(params) < wanted:
        key = _made_up_word(rng) if rng.random() < 0.7 else rng.choice(_PARAMS)
        if key not in params and key not in reserved:
            params.append(key)
    return name, params


_ECHO = ("Repeat after me: {span}", "Say back: {span}", "Echo this: {span}",
         "Copy exactly: {span}")


def echo_trajectory(rng: random.Random, index: int) -> dict[str, Any]:
    """A dialog without tools whose reply repeats a span of the user's turn verbatim.

    Every reply token is a copy, which is the densest signal for the base to learn to copy
    from the prompt (values into tool arguments, results into the final answer)."""
    span = " ".join(str(_value(rng) if rng.random() < 0.7 else rng.choice(_NOUNS))
                    for _ in range(rng.randint(1, 4)))
    request = rng.choice(_ECHO).format(span=span)
    return {
        "trajectory_id": f"pre-{index}",
        "task": request,
        "task_type": "generic_echo",
        "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                     {"role": "user", "content": request},
                     {"role": "assistant", "content": span}],
        "tools": [],
        "final_response": span,
    }


def generic_trajectory(rng: random.Random, index: int, version: int = 2) -> dict[str, Any]:
    """One made-up tool-use dialog in the trajectory shape (never a task family's tool).

    ``version`` 1 is the first corpus (keyed values in order, bare replies); 2 varies the
    phrasing, the order in which values are stated, the shapes of results, and replies
    that restate an argument, so the base learns to copy by content rather than position.
    """
    reserved = {f.tool_name for f in FAMILIES.values()}
    if version == 3 and rng.random() < 0.5:
        reserved |= {p for f in FAMILIES.values() for p in f.parameters["properties"]}
        return _schema_named_trajectory(rng, index, reserved)
    name = f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}"
    while name in reserved:  # pragma: no cover - the vocabularies do not overlap today
        name = f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}"
    params = rng.sample(_PARAMS, rng.randint(1, 3))
    values: dict[str, Any] = {p: _value(rng) for p in params}
    if version == 1:
        request = _request_v1(rng, name, values)
        result: Any = rng.randint(1, 9999) if rng.random() < 0.7 else rng.choice(_WORDS)
        final = rng.choice(_REPLIES).format(r=result)
    else:
        request = _request_v2(rng, name, values)
        result = _result(rng)
        final = rng.choice(_REPLIES_V2).format(
            r=result, noun=name.split("_")[1], v=values[rng.choice(params)],
            args=" and ".join(f"{p} {v}" for p, v in values.items()))
    types = {p: _json_type(v) if version >= 2 else "string" for p, v in values.items()}
    return _dialog(index, request, name, values, types, result, final)


def _schema_named_trajectory(rng: random.Random, index: int, reserved: set[str]) -> dict[str, Any]:
    """Corpus v3's other half: the request states only values; the tool's name and keys
    are made-up words found only in the schema, in the order the values come."""
    name, params = _schema_named(rng, reserved)
    values: dict[str, Any] = {p: _value(rng) for p in params}
    vals = rng.choice(_JOIN).join(str(v) for v in values.values())
    request = rng.choice(_BARE).format(vals=vals)
    if rng.random() < 0.3:
        request += " " + rng.choice(_ASIDES).format(n=rng.randint(1000, 9999))
    result = _result(rng)
    final = rng.choice((*_REPLIES_V2[:4], "The answer is {r}.", "{v} gives {r}.")).format(
        r=result, v=values[rng.choice(params)])
    types = {p: _json_type(v) for p, v in values.items()}
    return _dialog(index, request, name, values, types, result, final)


def _dialog(index: int, request: str, name: str, values: dict[str, Any], types: dict[str, str],
            result: Any, final: str) -> dict[str, Any]:
    params = list(values)
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
                                  "properties": {p: {"type": types[p]} for p in params},
                                  "required": list(params)}}],
        "final_response": final,
    }


def generic_corpus(n: int, seed: int, version: int = 2, echo: float = 0.0
                   ) -> Iterator[dict[str, Any]]:
    """``n`` generic dialogs (seeded): tool use (``version`` as in ``generic_trajectory``),
    and a share ``echo`` of ``echo_trajectory`` dialogs."""
    rng = random.Random(seed)
    for i in range(n):
        if echo and rng.random() < echo:
            yield echo_trajectory(rng, i)
        else:
            yield generic_trajectory(rng, i, version)


def init_sim_base(directory: str | Path, size: str = "1m", *, seed: int = 0,
                  copy_friendly: bool = True, isolate_digits: bool = False,
                  corpus: int = 2) -> Path:
    """The randomly initialised tiny model the simulator pre-trains.

    Its tokenizer is trained on generic dialogs only, so every token it has is one that
    pre-training sees (the task families' words are spelt in pieces of generic words, not
    by tokens whose embeddings nothing ever trained), with spaces isolated unless
    ``copy_friendly`` is false, digits too if ``isolate_digits`` (see ``train_tokenizer``).
    """
    from hermes_fed.training.tiny_model import init_tiny_model

    texts = [json.dumps(doc["messages"]) + json.dumps(doc["tools"])
             for doc in generic_corpus(3000, seed + 7, corpus, echo=0.3)]
    return init_tiny_model(directory, size, seed=seed, copy_friendly=copy_friendly,
                           isolate_digits=isolate_digits, texts=texts)


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
    corpus = generic_corpus(cfg.steps * cfg.batch_size, cfg.seed, cfg.corpus, cfg.echo)
    started, losses = time.perf_counter(), []
    model.train()
    for _ in range(cfg.steps):
        batch_docs = [tokenize_trajectory(tokenizer, next(corpus), max_length=cfg.max_length)
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
        if len(losses) % 100 == 0:
            log.info("pretrain step %d loss %.4f", len(losses), sum(losses[-100:]) / 100)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"loss_first": losses[0], "loss_last": float(sum(losses[-10:]) / len(losses[-10:])),
            "seconds": time.perf_counter() - started}
