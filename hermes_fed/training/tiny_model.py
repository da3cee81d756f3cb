"""A tiny Llama-style base model and a locally trained tokenizer, for tests and demos.

There is no model hub on a node (DESIGN.md §6): ``init_tiny_model`` builds a randomly
initialised ``LlamaForCausalLM`` from a config, trains a byte-level BPE tokenizer
(Radford et al., 2019, GPT-2 §2.2) on a built-in corpus of agent-like text, attaches the
hermes-fed chat template (tool calls, tool results, ``{% generation %}`` marks on assistant
turns) and saves everything as a Hugging Face directory that reloads offline.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|pad|>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
)


@dataclass(frozen=True, slots=True)
class TinyModelSize:
    """Shape of one tiny model; parameter counts include the (tied) embeddings."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int


TINY_SIZES: dict[str, TinyModelSize] = {
    # ~1.1M parameters: 4096*128 embeddings + 2 layers of ~262k.
    "1m": TinyModelSize("1m", 4096, 128, 512, 2, 4, 4, 1024),
    # ~1.6M parameters: the 1m shape with 4 layers (depth for copying spans of the prompt).
    "2m": TinyModelSize("2m", 4096, 128, 512, 4, 4, 4, 1024),
    # ~9.4M parameters: 4096*256 embeddings + 8 layers of ~1.05M.
    "10m": TinyModelSize("10m", 4096, 256, 1024, 8, 8, 8, 2048),
}


def chat_template() -> str:
    """Return the hermes-fed chat template (Jinja) shipped with the package."""
    return resources.files("hermes_fed.training").joinpath("chat_template.jinja").read_text(encoding="utf-8")


_TOOLS = ("calculator", "search", "read_file", "run_sql", "http_get", "send_email")
_WORD_TEXT = (
    "the report invoice customer order ticket deploy build server database query table "
    "user account balance total sum average error retry result value file config update "
    "please could you compute find check list show summarise explain fix write run test "
    "status pending done failed success timeout latency request response json api key "
    "today yesterday week month year number count price amount tax rate percent name"
)
_WORDS = tuple(_WORD_TEXT.split())


def _corpus_lines(seed: int, n: int) -> Iterator[str]:
    """Agent-like text: chat turns, JSON tool calls, tool results, arithmetic."""
    rng = random.Random(seed)
    for _ in range(n):
        a, b = rng.randint(0, 999), rng.randint(1, 999)
        op = rng.choice("+-*/")
        tool = rng.choice(_TOOLS)
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14)))
        args = json.dumps(
            {"expression": f"{a}{op}{b}"}
            if tool == "calculator"
            else {"query": words, "limit": rng.randint(1, 50)}
        )
        yield "<|im_start|>system\nYou are a helpful agent with tools.<|im_end|>"
        yield f"<|im_start|>user\nWhat is {a}{op}{b}? Also {words}.<|im_end|>"
        yield (
            f'<|im_start|>assistant\n<tool_call>{{"name": "{tool}", "arguments": '
            f"{args}}}</tool_call><|im_end|>"
        )
        yield (
            f'<|im_start|>tool\n<tool_response>{{"result": {a + b}, "status": "ok"}}'
            "</tool_response><|im_end|>"
        )
        yield f"<|im_start|>assistant\n{a}{op}{b} = {a + b}. The {words}.<|im_end|>"
        yield json.dumps(
            {"name": tool, "description": f"{tool} tool: {words}", "parameters": {"type": "object"}}
        )


def train_tokenizer(
    vocab_size: int,
    *,
    seed: int = 0,
    copy_friendly: bool = False,
    isolate_digits: bool = False,
    texts: Iterable[str] | None = None,
) -> object:
    """Train a byte-level BPE tokenizer on the built-in corpus (a few seconds).

    ``copy_friendly`` isolates every space before the byte-level split, so a value keeps
    the same tokens wherever it appears: GPT-2's pre-tokenizer glues a leading space to a
    word or number, so ``" 583"`` in a user turn and ``"583`` inside a JSON tool call are
    different tokens, and a tiny model would have to learn that mapping value by value.
    ``isolate_digits`` also splits every digit off (a common trick for arithmetic; here it
    made copying *harder*: a 10-token alphabet repeats inside every number and date).
    ``texts`` replace the built-in training corpus (e.g. with the text a base will be
    pre-trained on, so that every token it has is one pre-training sees). Returns a
    ``transformers.PreTrainedTokenizerFast`` with the chat template attached.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    if copy_friendly or isolate_digits:
        pattern = "|".join(([" "] if copy_friendly else []) + (["[0-9]"] if isolate_digits else []))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus_lines(seed, 3000) if texts is None else texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|im_end|>", "<|pad|>")],
    )
    fast.chat_template = chat_template()
    return fast


def init_tiny_model(
    directory: str | Path,
    size: str = "1m",
    *,
    seed: int = 0,
    copy_friendly: bool = False,
    isolate_digits: bool = False,
    texts: Iterable[str] | None = None,
) -> Path:
    """Build and save a tiny Llama-style model + tokenizer + chat template.

    Parameters
    ----------
    directory
        Output directory (created); afterwards ``AutoModelForCausalLM.from_pretrained`` and
        ``AutoTokenizer.from_pretrained`` load it with ``HF_HUB_OFFLINE=1``.
    size
        A key of ``TINY_SIZES`` (``"1m"``, ``"2m"`` or ``"10m"``).
    seed
        Seeds both the weights and the tokenizer corpus: the same seed gives the same files.
    copy_friendly, isolate_digits, texts
        Tokenizer options (see ``train_tokenizer``); the simulator's pre-trained base uses
        ``copy_friendly`` so that operands copy token for token.
    """
    if size not in TINY_SIZES:
        raise ValueError(f"size must be one of {sorted(TINY_SIZES)}, got {size!r}")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = TINY_SIZES[size]
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(
        shape.vocab_size,
        seed=seed,
        copy_friendly=copy_friendly,
        isolate_digits=isolate_digits,
        texts=texts,
    )
    vocab = len(tokenizer)  # type: ignore[arg-type]
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)  # type: ignore[attr-defined]
    return out
