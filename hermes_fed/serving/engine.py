"""The engine of ``hermes-fed model serve``: a base model plus LoRA adapters by name.

transformers + peft on the local base directory; adapters (PEFT directories) are loaded
under a name and picked per request, like vLLM's ``--enable-lora``: the base answers under
its served name, an adapter under its own, and loading a name that is already loaded is
refused (names are versions; vLLM reuses stale prefix-cache blocks when a name is reloaded,
issue #42125). Prompts are rendered with the model's own chat template, tools included;
the answer's tool calls are parsed from the template's format, ``<tool_call>{"name": ...,
"arguments": {...}}</tool_call>``. A call that does not parse stays text: it is what the
model said.

``tool_choice`` naming a function, or ``"required"`` with one tool offered, decodes the
answer as a call of that tool against its schema (:mod:`.constrained`: the scaffold forced,
the values sampled, as vLLM's guided decoding does); ``"required"`` among several tools
forces the opening ``<tool_call>{"name": "`` and samples the rest; ``"none"`` renders no
tools.
Generation is serialised (one model, one active adapter at a time); it is the embedded
default for small local models, not a batching server.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from hermes_fed.errors import HermesFedError

log = logging.getLogger(__name__)
_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_END_MARKERS = ("<|im_end|>", "<|endoftext|>", "<|pad|>")


class EngineError(HermesFedError):
    """A request the engine cannot serve; ``status`` and ``code`` shape the HTTP answer."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to sample one answer (OpenAI's request fields)."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    tool_choice: Any = "auto"

    @classmethod
    def from_request(cls, body: Mapping[str, Any], limit: int) -> SamplingParams:
        def number(name: str, default: float, low: float, high: float) -> float:
            value = body.get(name)
            if value is None:
                return default
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not low <= value <= high:
                raise EngineError(400, f"{name}: expected a number in [{low}, {high}], got "
                                       f"{value!r}", "invalid_value")
            return float(value)

        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is None:
            max_tokens = min(256, limit)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise EngineError(400, f"max_tokens: expected an integer >= 1, got {max_tokens!r}",
                              "invalid_value")
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        if not all(isinstance(s, str) and s for s in stop):
            raise EngineError(400, "stop: expected a string or a list of strings", "invalid_value")
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise EngineError(400, f"seed: expected an integer, got {seed!r}", "invalid_value")
        choice = body.get("tool_choice", "auto")
        if not (choice in ("auto", "none", "required") or (
                isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping)
                and isinstance(choice["function"].get("name"), str))):
            raise EngineError(400, "tool_choice: expected auto|none|required or "
                                   '{"type": "function", "function": {"name": ...}}',
                              "invalid_value")
        return cls(min(int(max_tokens), limit), number("temperature", 1.0, 0.0, 2.0),
                   number("top_p", 1.0, 0.0, 1.0), seed, stop, choice)


@dataclass(frozen=True, slots=True)
class Generation:
    """An answer: the assistant message (OpenAI shape), why it stopped, token counts."""

    message: dict[str, Any]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def parse_answer(text: str, forced: str = "") -> tuple[str, list[dict[str, Any]]]:
    """Content and OpenAI-shaped tool calls of a decoded answer (``forced`` is the opening
    the engine wrote for the model and is part of the answer)."""
    text = forced + text
    cut = len(text)
    for marker in _END_MARKERS:
        at = text.find(marker)
        if at != -1:
            cut = min(cut, at)
    text = text[:cut]
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    last = 0
    for match in _CALL.finditer(text):
        try:
            body = orjson.loads(match.group(1))
        except orjson.JSONDecodeError:
            continue
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) \
                or not isinstance(body.get("arguments", {}), dict):
            continue
        kept.append(text[last:match.start()])
        last = match.end()
        calls.append({"id": "call_" + secrets.token_hex(8), "type": "function",
                      "function": {"name": body["name"],
                                   "arguments": orjson.dumps(body.get("arguments", {})).decode()}})
    kept.append(text[last:])
    return "".join(kept), calls


class ModelEngine:
    """A base model and its LoRA adapters, by name.

    Parameters
    ----------
    model_dir
        A local Hugging Face model directory with its tokenizer and chat template.
    served_name
        The name the base model answers to.
    device
        ``cpu`` or ``cuda``.
    max_adapters
        Most adapters loaded at once (vLLM's ``--max-loras`` in spirit).
    """

    def __init__(self, model_dir: str | Path, served_name: str = "base", device: str = "cpu",
                 max_adapters: int = 8) -> None:
        from hermes_fed.training.adapter import load_base_model

        self.model_dir = Path(model_dir)
        self.served_name = served_name
        self.max_adapters = max_adapters
        model, self.tokenizer = load_base_model(model_dir, device)
        model.eval()
        self.model: Any = model
        self.device = device
        self.adapters: dict[str, Path] = {}
        self._lock = threading.Lock()
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 2048))
        self._tool_call_id = self.tokenizer.convert_tokens_to_ids("<tool_call>")
        self._fits: dict[str, bool] = {}  # tool schema -> does the constrained decoder fit

    # --- adapters -----------------------------------------------------------------------
    def names(self) -> list[str]:
        return [self.served_name, *self.adapters]

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Load a PEFT adapter directory under ``name``; a known name is refused."""
        from peft import PeftModel

        source = Path(path)
        if name == self.served_name or name in self.adapters:
            raise EngineError(400, f"The lora adapter '{name}' has already been loaded.",
                              "adapter_exists")
        if not (source / "adapter_config.json").is_file():
            raise EngineError(400, f"no PEFT adapter at {source} (adapter_config.json missing)",
                              "invalid_adapter")
        if len(self.adapters) >= self.max_adapters:
            raise EngineError(400, f"{self.max_adapters} adapters are loaded already; unload "
                                   "one first", "too_many_adapters")
        with self._lock:
            try:
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(str(source), adapter_name=name)
                else:
                    self.model = PeftModel.from_pretrained(self.model, str(source),
                                                           adapter_name=name)
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise EngineError(400, f"cannot load the adapter at {source}: "
                                       f"{type(exc).__name__}: {str(exc)[:200]}",
                                  "invalid_adapter") from None
            self.model.eval()
            self.adapters[name] = source
        log.info("event=adapter_loaded name=%s", name)

    def unload_adapter(self, name: str) -> None:
        if name not in self.adapters:
            raise EngineError(404, f"The lora adapter '{name}' cannot be found.",
                              "adapter_not_found")
        with self._lock:
            if len(self.adapters) == 1:
                self.model = self.model.unload()  # the base model, its LoRA layers removed
            else:
                if self.model.active_adapter == name:
                    self.model.set_adapter(next(n for n in self.adapters if n != name))
                self.model.delete_adapter(name)
            del self.adapters[name]
        log.info("event=adapter_unloaded name=%s", name)

    # --- generation ---------------------------------------------------------------------
    def prompt(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]],
               ) -> list[int]:
        from hermes_fed.training.dataset import to_chat

        chat, hf_tools = to_chat({"messages": list(messages), "tools": list(tools)})
        rendered = self.tokenizer.apply_chat_template(
            chat, tools=hf_tools or None, tokenize=True, add_generation_prompt=True,
            return_dict=True)
        return list(rendered["input_ids"])

    @staticmethod
    def forced_opening(choice: Any, tools: Sequence[Mapping[str, Any]]) -> str:
        if choice == "required" and len(tools) == 1:
            choice = {"function": {"name": tools[0]["name"]}}  # one tool: it is the one
        if isinstance(choice, Mapping):
            name = choice["function"]["name"]
            if not any(t.get("name") == name for t in tools):
                raise EngineError(400, f"tool_choice names {name!r}, which is not in tools",
                                  "invalid_value")
            return '<tool_call>{"name": ' + orjson.dumps(name).decode() + ', "arguments": '
        if choice == "required":
            if not tools:
                raise EngineError(400, "tool_choice 'required' needs tools", "invalid_value")
            return '<tool_call>{"name": "'
        return ""

    def _constrained_tool(self, choice: Any, tools: Sequence[Mapping[str, Any]]
                          ) -> Mapping[str, Any] | None:
        """The one tool a required call must be of (named, or the only one offered), when
        the schema-constrained decoder fits this tokenizer; else None."""
        from .constrained import fits_tokenizer, tool_key

        if isinstance(choice, Mapping):
            tool = next((t for t in tools if t.get("name") == choice["function"]["name"]), None)
        elif choice == "required" and len(tools) == 1:
            tool = tools[0]
        else:
            return None
        if tool is None:
            return None
        key = tool_key(tool)
        if key not in self._fits:
            self._fits[key] = fits_tokenizer(self.tokenizer, tool)
        return tool if self._fits[key] else None

    def _selected(self, model_name: str) -> Any:
        """The model with ``model_name``'s adapter active (call under the lock)."""
        run = self.model
        if self.adapters:
            if model_name == self.served_name:
                return run.disable_adapter()
            run.set_adapter(model_name)
        return _nullcontext()

    def generate(self, model_name: str, messages: Sequence[Mapping[str, Any]],
                 tools: Sequence[Mapping[str, Any]], params: SamplingParams,
                 on_text: Callable[[str], None] | None = None,
                 cancel: threading.Event | None = None) -> Generation:
        """One answer from ``model_name`` (the base or an adapter). ``on_text`` receives the
        content as it is generated, up to the first tool call (which is parsed at the end);
        setting ``cancel`` stops generating at the next token (a client that left)."""
        import torch

        if model_name != self.served_name and model_name not in self.adapters:
            raise EngineError(404, f"The model `{model_name}` does not exist.", "model_not_found")
        offered = [] if params.tool_choice == "none" else list(tools)
        forced = self.forced_opening(params.tool_choice, offered)
        prompt = self.prompt(messages, offered)
        if len(prompt) + 1 > self.max_positions:
            raise EngineError(400, f"the prompt has {len(prompt)} tokens; this model reads at "
                                   f"most {self.max_positions}", "context_length_exceeded")
        tool = self._constrained_tool(params.tool_choice, offered)
        if tool is not None:
            return self._constrained(model_name, prompt, tool, params)
        forced_ids = (list(self.tokenizer(forced, add_special_tokens=False)["input_ids"])
                      if forced else [])
        max_new = min(params.max_tokens, self.max_positions - len(prompt) - len(forced_ids))
        if max_new < 1:
            raise EngineError(400, "no room left to answer in the model's context",
                              "context_length_exceeded")
        streamer = _TextStreamer(self.tokenizer, self._tool_call_id, on_text) \
            if on_text is not None and not forced else None
        kwargs: dict[str, Any] = {"do_sample": False} if params.temperature == 0 else {
            "do_sample": True, "temperature": params.temperature, "top_p": params.top_p,
            "top_k": 0}
        ids = torch.tensor([prompt + forced_ids], device=self.device)
        if cancel is not None:
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList([_Cancelled(cancel)])
        with self._lock, torch.no_grad():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            with self._selected(model_name):
                out = self.model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                    streamer=streamer, eos_token_id=self.tokenizer.eos_token_id,
                    pad_token_id=self.tokenizer.pad_token_id, **kwargs)
        new = out[0, ids.shape[1]:].tolist()
        ended = bool(new) and new[-1] == self.tokenizer.eos_token_id
        text = self.tokenizer.decode(new, skip_special_tokens=False)
        for stop in params.stop:
            at = text.find(stop)
            if at != -1:
                text, ended = text[:at], True
        return self._answer(text, forced, ended, len(prompt), len(new) + len(forced_ids))

    def _constrained(self, model_name: str, prompt: list[int], tool: Mapping[str, Any],
                     params: SamplingParams) -> Generation:
        """A required call decoded against the tool's schema (:mod:`.constrained`)."""
        import torch

        from .constrained import generate_calls

        seed = params.seed if params.seed is not None else secrets.randbits(31)
        with self._lock, torch.no_grad(), self._selected(model_name):
            text = generate_calls(self.model, self.tokenizer, [prompt], [tool],
                                  temperature=params.temperature, seed=seed)[0]
        completion = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self._answer(text, "", True, len(prompt), completion)

    @staticmethod
    def _answer(text: str, forced: str, ended: bool, prompt_tokens: int,
                completion_tokens: int) -> Generation:
        content, calls = parse_answer(text, forced)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["content"] = content or None
            message["tool_calls"] = calls
        finish = "tool_calls" if calls else ("stop" if ended else "length")
        return Generation(message, finish, prompt_tokens, completion_tokens)


class _Cancelled:
    """A stopping criterion that ends generation once ``event`` is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool,
                          device=input_ids.device)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class _TextStreamer:
    """transformers' streamer protocol (``put``/``end``): hands out new content text as it is
    decoded, and stops handing out at the first tool-call token or end marker (a call is
    parsed whole at the end and streamed as tool-call chunks)."""

    def __init__(self, tokenizer: Any, tool_call_id: int, on_text: Callable[[str], None]) -> None:
        self._tokenizer = tokenizer
        self._tool_call_id = tool_call_id
        self._on_text = on_text
        self._ids: list[int] = []
        self._sent = 0
        self._prompt_seen = False
        self._held = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first puts the prompt
            self._prompt_seen = True
            return
        if self._held:
            return
        for token in value.reshape(-1).tolist():
            if token == self._tool_call_id or token == self._tokenizer.eos_token_id:
                self._held = True
                break
            self._ids.append(int(token))
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        # A multi-byte character split across tokens decodes to U+FFFD until it completes.
        if text.endswith("\ufffd"):
            return
        if len(text) > self._sent:
            self._on_text(text[self._sent:])
            self._sent = len(text)

    def end(self) -> None:
        return None
