"""The simulated agent: the tiny local model (+ adapter) solving tasks with real tools.

Per task: render ``[system, user]`` with the tool through the model's chat template, sample
a reply (by default a schema-constrained call of the tool, see
:mod:`examples.flywheel.constrained`), parse ``<tool_call>{"name": ..., "arguments": ...}
</tool_call>`` (the template's tool-call format), execute the tool, append the tool result,
sample the final answer. A reply without a parsable tool call is the final answer itself.
Tasks run as a batch (left-padded, one ``generate`` per turn), seeded: same model, tasks and
seed give the same trajectories.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from examples.flywheel.tasks import SYSTEM_PROMPT, TaskInstance, family

log = logging.getLogger(__name__)
_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_END_MARKERS = ("<|im_end|>", "<|endoftext|>", "<|pad|>")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A parsed tool call: the tool name and its JSON-object arguments."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """How the agent samples; every default is documented in its ``help``."""

    temperature: float = 0.7
    max_call_tokens: int = 80  # the longest golden call is 53 tokens (test_agent)
    max_answer_tokens: int = 32
    batch_size: int = 32
    # The first turn as a call of the offered tool, its scaffold forced from the schema and
    # only the argument values sampled (examples.flywheel.constrained): what serving stacks do
    # with strict tool schemas and tool_choice="required". False: free sampling.
    constrained_calls: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, int | float) and self.temperature >= 0):
            raise ValueError(f"AgentConfig.temperature must be >= 0 (0 = greedy), got "
                             f"{self.temperature!r}")
        if not isinstance(self.constrained_calls, bool):
            raise ValueError(f"AgentConfig.constrained_calls must be a bool, got "
                             f"{self.constrained_calls!r}")
        for name in ("max_call_tokens", "max_answer_tokens", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"AgentConfig.{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True, slots=True)
class AgentOutcome:
    """One attempt at a task: the trajectory messages and how it went."""

    messages: tuple[dict[str, Any], ...]
    final_response: str
    tool_call: ToolCall | None
    malformed_call: bool
    tool_error: bool
    correct: bool


def parse_tool_call(text: str) -> ToolCall | bool | None:
    """Parse the first tool call of an assistant reply.

    Returns the call, ``None`` when the reply holds no ``<tool_call>`` at all, or ``False``
    when it holds one that is not ``{"name": str, "arguments": object}`` JSON.
    """
    if "<tool_call>" not in text:
        return None
    match = _CALL.search(text)
    if not match:
        return False
    try:
        body = json.loads(match.group(1))
    except ValueError:
        return False
    if not isinstance(body, dict) or not isinstance(body.get("name"), str) \
            or not isinstance(body.get("arguments"), dict):
        return False
    return ToolCall(body["name"], body["arguments"])


def clean_reply(text: str) -> str:
    """Cut a decoded reply at its end marker and strip it."""
    cut = len(text)
    for marker in _END_MARKERS:
        at = text.find(marker)
        if at != -1:
            cut = min(cut, at)
    return text[:cut].strip()


class LocalAgent:
    """The base model (+ optional LoRA adapter) behind the agent loop.

    Parameters
    ----------
    model_dir
        The local base model directory (``hermes-fed model init-tiny``).
    adapter
        LoRA tensors (peft names) or ``None`` for the base model alone.
    lora_config
        The adapter's LoRA shape; ``LoraTrainingConfig()`` by default.
    """

    def __init__(self, model_dir: str | Path, adapter: Mapping[str, np.ndarray] | None = None,
                 lora_config: Any = None, config: AgentConfig | None = None) -> None:
        from hermes_fed.training.adapter import (
            build_peft_model,
            load_adapter_state,
            load_base_model,
        )
        from hermes_fed.training.config import LoraTrainingConfig

        self.config = config or AgentConfig()
        self._fits: dict[str, bool] = {}  # tool schema -> does the constrained scaffold fit
        model, self.tokenizer = load_base_model(model_dir, "cpu")
        if adapter is not None:
            model = build_peft_model(model, lora_config or LoraTrainingConfig())
            load_adapter_state(model, adapter)
        self.model = model
        self.model.eval()

    def prompt_ids(self, messages: Sequence[Mapping[str, Any]], tools: list[dict[str, Any]]
                ) -> list[int]:
        """The chat template's token ids for ``messages`` with ``tools``, ready to generate."""
        from hermes_fed.training.dataset import to_chat

        chat, hf_tools = to_chat({"messages": list(messages), "tools": tools})
        ids = self.tokenizer.apply_chat_template(chat, tools=hf_tools or None, tokenize=True,
                                                 add_generation_prompt=True, return_dict=True)
        return list(ids["input_ids"])

    def generate(self, prompts: Sequence[list[int]], max_new_tokens: int, seed: int) -> list[str]:
        """Sample (or decode greedily at temperature 0) one reply per prompt."""
        import torch

        tok = self.tokenizer
        out: list[str] = []
        greedy = self.config.temperature == 0
        with torch.no_grad():
            for start in range(0, len(prompts), self.config.batch_size):
                chunk = prompts[start:start + self.config.batch_size]
                width = max(len(p) for p in chunk)
                ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, prompt in enumerate(chunk):
                    ids[row, width - len(prompt):] = torch.tensor(prompt)
                    mask[row, width - len(prompt):] = 1
                torch.manual_seed(seed * 1_000_003 + start)
                kwargs: dict[str, Any] = {"do_sample": False} if greedy else {
                    "do_sample": True, "temperature": float(self.config.temperature),
                    "top_k": 0, "top_p": 1.0}
                generated = self.model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                    eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **kwargs)
                for row in generated[:, width:].tolist():
                    out.append(clean_reply(tok.decode(row, skip_special_tokens=False)))
        return out

    def generate_calls(self, prompts: Sequence[list[int]], tools: Sequence[Mapping[str, Any]],
                       seed: int) -> list[str]:
        """Schema-constrained tool calls (:mod:`examples.flywheel.constrained`), batched; free
        sampling when the tokenizer would split a forced scaffold unlike the template."""
        from examples.flywheel.constrained import fits_tokenizer, generate_calls, tool_key

        distinct = {tool_key(t): t for t in tools}
        for key, tool in distinct.items():  # checked once per tool and agent
            if key not in self._fits:
                self._fits[key] = fits_tokenizer(self.tokenizer, tool)
        if not all(self._fits[key] for key in distinct):
            log.warning("constrained tool calls need a tokenizer that starts a piece where a "
                        "value starts; this one does not: sampling calls freely")
            return self.generate(prompts, self.config.max_call_tokens, seed)
        out: list[str] = []
        for start in range(0, len(prompts), self.config.batch_size):
            texts = generate_calls(
                self.model, self.tokenizer, prompts[start:start + self.config.batch_size],
                tools[start:start + self.config.batch_size],
                temperature=float(self.config.temperature), seed=seed * 1_000_003 + start)
            out.extend(clean_reply(t) for t in texts)
        return out

    def solve(self, tasks: Sequence[tuple[TaskInstance, str]], seed: int) -> list[AgentOutcome]:
        """Run the agent loop on ``(instance, user_text)`` pairs (one batch per turn)."""
        starts: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
        for instance, user_text in tasks:
            tools = [family(instance.task_type).tool_schema]
            starts.append(([{"role": "system", "content": SYSTEM_PROMPT},
                            {"role": "user", "content": user_text}], tools))
        prompts = [self.prompt_ids(m, t) for m, t in starts]
        if self.config.constrained_calls:
            first = self.generate_calls(prompts, [t[0] for _, t in starts], seed)
        else:
            first = self.generate(prompts, self.config.max_call_tokens, seed)
        outcomes: list[AgentOutcome | None] = [None] * len(tasks)
        pending: list[tuple[int, list[dict[str, Any]], ToolCall, bool]] = []
        for i, ((instance, user_text), (messages, _), reply) in enumerate(
                zip(tasks, starts, first, strict=True)):
            call = parse_tool_call(reply)
            if not isinstance(call, ToolCall):
                outcomes[i] = finish_attempt(instance, user_text, messages, reply, None,
                                           malformed=call is False, tool_error=False)
                continue
            fam = family(instance.task_type)
            result = fam.run(call.arguments) if call.name == fam.tool_name else json.dumps(
                {"error": f"unknown tool {call.name[:40]!r}"})
            tool_error = "error" in json.loads(result)
            history = [*messages,
                       {"role": "assistant", "content": "",
                        "tool_calls": [{"id": "call_1", "name": call.name,
                                        "arguments": call.arguments}]},
                       {"role": "tool", "tool_call_id": "call_1", "name": call.name,
                        "content": result}]
            pending.append((i, history, call, tool_error))
        if pending:
            finals = self.generate(
                [self.prompt_ids(h, [family(tasks[i][0].task_type).tool_schema])
                 for i, h, _, _ in pending], self.config.max_answer_tokens, seed + 7919)
            for (i, history, call, tool_error), reply in zip(pending, finals, strict=True):
                instance, user_text = tasks[i]
                outcomes[i] = finish_attempt(instance, user_text, history, reply, call,
                                           malformed=False, tool_error=tool_error)
        return [o for o in outcomes if o is not None]


def finish_attempt(instance: TaskInstance, user_text: str, history: Sequence[Mapping[str, Any]],
                   reply: str, call: ToolCall | None, *, malformed: bool,
                   tool_error: bool) -> AgentOutcome:
    """The attempt ending in ``reply``: the final answer appended and checked."""
    # A stray tool-call fragment in a final reply is kept as text: it is what the model said.
    final = reply.replace("<tool_call>", "").replace("</tool_call>", "").strip()
    messages = (*(dict(m) for m in history), {"role": "assistant", "content": final})
    correct = family(instance.task_type).verify(user_text, final)
    return AgentOutcome(tuple(messages), final, call, malformed, tool_error, correct)
