"""Schema-constrained tool calls: an answer decoded as a call of one offered tool.

Serving stacks constrain tool calls to the declared schema when the caller requires a call
(OpenAI's ``tool_choice: "required"`` or a named function; vLLM's guided decoding): a model
cannot misspell the tool or an argument name, and each value has its JSON type.
``hermes-fed model serve`` does the same: the call's scaffold, ``<tool_call>{"name": ...,
"arguments": {"key": `` and so on, is forced token by token exactly as the chat template
renders it (a test checks the tokens against the template's), and only the argument values
are the model's:

- a string value is sampled from tokens without a quote, backslash or newline until the
  model picks a token holding a quote (the closing one), at most ``max_value_tokens``;
- a number value is sampled from numeric tokens until the model picks any other token.

Schemas are flat (string and number properties, in schema order), the shape of the tools
the simulator and the tests offer; the simulator's agent uses this module too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_NUMERIC = re.compile(r"[-0-9.]+")
# JSON numbers (RFC 8259), and the strings that can still grow into one
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
_NUMBER_PREFIX = re.compile(r"-|-?(0|[1-9][0-9]*)(\.[0-9]*)?")
LITERAL, STRING, NUMBER = "literal", "string", "number"


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of a call: forced ``tokens`` (literal), or a value the model writes."""

    kind: str
    tokens: tuple[int, ...] = ()


def call_program(tokenizer: Any, tool_schema: Mapping[str, Any]) -> tuple[Segment, ...]:
    """The segments of a call to ``tool_schema``'s tool, its arguments in schema order.

    The literal pieces end where a value starts and restart with the character after it
    (a string value's closing quote), so they split the rendered call at the same places as
    the tokenizer's pre-tokenizer does: letters, digits and punctuation runs are separate
    pre-tokens, and a value's first character starts a new one.
    """
    properties = dict(tool_schema.get("parameters", {}).get("properties", {}))
    segments: list[Segment] = []
    text = '<tool_call>{"name": ' + json.dumps(tool_schema["name"]) + ', "arguments": {'
    for i, (key, spec) in enumerate(properties.items()):
        kind = NUMBER if isinstance(spec, Mapping) and spec.get("type") in ("number", "integer") \
            else STRING
        text += ("" if i == 0 else ", ") + json.dumps(key) + ": " + ('"' if kind == STRING else "")
        segments.append(Segment(LITERAL, _encode(tokenizer, text)))
        segments.append(Segment(kind))
        text = '"' if kind == STRING else ""
    text += "}}</tool_call>" + str(tokenizer.eos_token)
    segments.append(Segment(LITERAL, _encode(tokenizer, text)))
    return tuple(segments)


def fits_tokenizer(tokenizer: Any, tool_schema: Mapping[str, Any]) -> bool:
    """Whether forcing the scaffold gives the tokens the chat template's call would have.

    True for a tokenizer whose pre-tokenizer starts a new piece where a value starts (the
    simulator's copy-friendly one isolates spaces); a GPT-2 style one glues the space before
    a number to it (`` 292``), so forcing ``": "`` and then sampling the number would show
    the model a split it never saw: the agent samples freely with such a tokenizer instead.
    """
    program = call_program(tokenizer, tool_schema)
    values = iter(("1" if seg.kind == NUMBER else "ab1") for seg in program if seg.kind != LITERAL)
    forced: list[int] = []
    text = ""
    for seg in program:
        if seg.kind == LITERAL:
            forced.extend(seg.tokens)
            text += tokenizer.decode(list(seg.tokens), skip_special_tokens=False)
        else:
            value = next(values)
            forced.extend(_encode(tokenizer, value))
            text += value
    return list(_encode(tokenizer, text)) == forced


def tool_key(tool_schema: Mapping[str, Any]) -> str:
    """A tool schema as a key (a batch offers the same few tools to many rows)."""
    return json.dumps(tool_schema, sort_keys=True)


def _encode(tokenizer: Any, text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass(frozen=True, slots=True)
class TokenClasses:
    """Boolean masks over the vocabulary: what a value may hold, and what closes a string."""

    string_body: Any  # torch.BoolTensor [vocab]
    string_close: Any
    number_body: Any
    numeric: Mapping[int, str]  # id -> text of every number_body token


# tokenizer id -> (the tokenizer, kept so its id is not reused; vocab size; masks)
_CLASSES: dict[int, tuple[Any, int, TokenClasses]] = {}


def token_classes(tokenizer: Any, vocab_size: int) -> TokenClasses:
    """The masks for ``tokenizer`` (cached; ``vocab_size`` is the model's, which may pad)."""
    import torch

    cached = _CLASSES.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer and cached[1] == vocab_size:
        return cached[2]
    special = {int(i) for i in tokenizer.all_special_ids}
    special |= {int(i) for i in tokenizer.get_added_vocab().values()}
    body = torch.zeros(vocab_size, dtype=torch.bool)
    close = torch.zeros(vocab_size, dtype=torch.bool)
    number = torch.zeros(vocab_size, dtype=torch.bool)
    numeric: dict[int, str] = {}
    for i in range(min(vocab_size, len(tokenizer))):
        text = tokenizer.decode([i])
        if i in special or not text:
            continue
        if '"' in text:
            close[i] = True
        elif "\\" not in text and "\n" not in text:
            body[i] = True
        if _NUMERIC.fullmatch(text):
            number[i] = True
            numeric[i] = text
    classes = TokenClasses(body, close, number, numeric)
    _CLASSES[id(tokenizer)] = (tokenizer, vocab_size, classes)
    return classes


@dataclass(slots=True)
class _Row:
    program: tuple[Segment, ...]
    segment: int = 0
    offset: int = 0  # next token of a literal / tokens written into a value
    value: str = ""  # the number written so far
    done: bool = False


def generate_calls(model: Any, tokenizer: Any, prompts: Sequence[list[int]],
                   tools: Sequence[Mapping[str, Any]], *, temperature: float, seed: int,
                   max_value_tokens: int = 16) -> list[str]:
    """One constrained call per prompt (``tools[i]`` is the tool of ``prompts[i]``), as
    decoded text ending at the end-of-turn marker. One batch, one forward pass per step."""
    import torch

    if not prompts:
        return []
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), int(tokenizer.pad_token_id), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids[i, width - len(prompt):] = torch.tensor(prompt)
        mask[i, width - len(prompt):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    keys = [tool_key(t) for t in tools]
    distinct = dict(zip(keys, tools, strict=True))
    programs = {key: call_program(tokenizer, tool) for key, tool in distinct.items()}
    rows = [_Row(programs[key]) for key in keys]
    out: list[list[int]] = [[] for _ in prompts]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        result = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        classes = token_classes(tokenizer, int(result.logits.shape[-1]))
        cache, logits = result.cache, result.logits[:, -1, :]
        last = positions[:, -1]
        while not all(r.done for r in rows):
            step = [int(tokenizer.pad_token_id)] * len(rows)
            for b, row in enumerate(rows):
                if not row.done:
                    step[b] = _next_token(row, logits[b], classes, temperature, generator,
                                          max_value_tokens)
                    out[b].append(step[b])
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
            last = last + 1
            result = model(input_ids=torch.tensor(step)[:, None], attention_mask=mask,
                           position_ids=last[:, None], cache=cache, use_cache=True)
            cache, logits = result.cache, result.logits[:, -1, :]
    return [tokenizer.decode(tokens, skip_special_tokens=False) for tokens in out]


def _next_token(row: _Row, logits: Any, classes: TokenClasses, temperature: float,
                generator: Any, max_value_tokens: int) -> int:
    """The row's next token: the literal's, or the model's within its value's class; a value
    the model ends (or that reaches ``max_value_tokens``) hands over to the next literal."""
    while True:
        segment = row.program[row.segment]
        if segment.kind == LITERAL:
            token = segment.tokens[row.offset]
            row.offset += 1
            if row.offset == len(segment.tokens):
                row.segment, row.offset = row.segment + 1, 0
                row.done = row.segment == len(row.program)
            return token
        if row.offset >= max_value_tokens:
            row.segment, row.offset, row.value = row.segment + 1, 0, ""
            continue
        if segment.kind == STRING:
            allowed = classes.string_body if row.offset == 0 else \
                classes.string_body | classes.string_close
            token = _draw(logits, allowed, temperature, generator)
            if bool(classes.string_close[token]):  # the model closed the string
                row.segment, row.offset = row.segment + 1, 0
                continue
        else:
            token = _draw(logits, _number_mask(row.value, classes), temperature, generator)
            if not bool(classes.number_body[token]):  # the model ended the number
                row.segment, row.offset, row.value = row.segment + 1, 0, ""
                continue
            row.value += classes.numeric[token]
        row.offset += 1
        return token


def _number_mask(written: str, classes: TokenClasses) -> Any:
    """Tokens that keep ``written`` on the way to a JSON number, and, once it is one, any
    other token to end it with."""
    import torch

    allowed = torch.zeros_like(classes.number_body)
    for token, text in classes.numeric.items():
        if _NUMBER_PREFIX.fullmatch(written + text):
            allowed[token] = True
    if _NUMBER.fullmatch(written):
        allowed |= (classes.string_body | classes.string_close) & ~classes.number_body
    return allowed


def _draw(logits: Any, allowed: Any, temperature: float, generator: Any) -> int:
    import torch

    masked = logits.masked_fill(~allowed, float("-inf"))
    if temperature == 0:
        return int(torch.argmax(masked))
    probs = torch.softmax(masked.float() / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))
