"""Held-out evaluation: assistant log-likelihood and task success, base vs base+adapter.

Per example: the mean log-likelihood (nats per token) of its assistant tokens under the
base model and under base+adapter, and, where ``VERIFIERS`` knows the task type, whether a
greedy decoding of the final assistant turn (given everything before it) succeeds. The
aggregate metrics include the paired differences as sufficient statistics (n, sum, sum of
squares), the shape the offline A/B comparison consumes (DESIGN.md §8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hermes_fed.privacy.surrogates import with_surrogates
from hermes_fed.training import losses
from hermes_fed.training.adapter import (
    build_peft_model,
    load_base_model,
    load_for_config,
    resolve_device,
)
from hermes_fed.training.config import LoraTrainingConfig
from hermes_fed.training.dataset import TrainingExample, collate, to_chat, tokenize_trajectory
from hermes_fed.training.verifiers import VERIFIERS, VerifierRegistry


@dataclass(frozen=True, slots=True)
class ExampleEval:
    """One held-out trajectory's figures; ``None`` where not measured."""

    trajectory_id: str
    task_type: str
    num_tokens: int
    base_loglik: float
    adapter_loglik: float | None
    base_success: bool | None
    adapter_success: bool | None


@dataclass(frozen=True, slots=True)
class EvalResult:
    """Per-example evaluations and their aggregates."""

    examples: tuple[ExampleEval, ...]

    def metrics(self) -> dict[str, float]:
        """Aggregates (plain floats, no ids or text): ready for ``TrainingRunCompleted``."""
        out: dict[str, float] = {"heldout_n": float(len(self.examples))}
        if not self.examples:
            return out
        base = np.array([e.base_loglik for e in self.examples])
        out["heldout_loglik_base"] = float(base.mean())
        if all(e.adapter_loglik is not None for e in self.examples):
            adapted = np.array([e.adapter_loglik for e in self.examples], dtype=float)
            delta = adapted - base
            out["heldout_loglik_adapter"] = float(adapted.mean())
            out["heldout_loglik_delta"] = float(delta.mean())
            out["heldout_loglik_delta_sum"] = float(delta.sum())
            out["heldout_loglik_delta_sumsq"] = float((delta**2).sum())
        judged = [e for e in self.examples if e.base_success is not None]
        if judged:
            out["success_n"] = float(len(judged))
            out["success_rate_base"] = float(np.mean([bool(e.base_success) for e in judged]))
            if all(e.adapter_success is not None for e in judged):
                out["success_rate_adapter"] = float(np.mean([bool(e.adapter_success) for e in judged]))
        return out


def _mean_logliks(
    model: Any, examples: Sequence[Any], pad_id: int, device: str, batch_size: int
) -> list[float]:
    out: list[float] = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            chunk = examples[i : i + batch_size]
            batch = {k: torch.from_numpy(v).to(device) for k, v in collate(chunk, pad_id).items()}
            logp, rows, _ = losses.token_logprobs(
                model, batch["input_ids"], batch["attention_mask"], batch["loss_weights"]
            )
            sums = losses.sequence_logprobs(logp, rows, len(chunk))
            counts = torch.bincount(rows, minlength=len(chunk)).clamp(min=1)
            out.extend((sums / counts).cpu().tolist())
    return out


def _final_turn_prompt(tokenizer: Any, trajectory: Mapping[str, Any], surrogates: bool) -> list[int]:
    # rendered as tokenize_trajectory renders it
    messages, tools = to_chat(with_surrogates(trajectory) if surrogates else trajectory)
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    ids = tokenizer.apply_chat_template(
        messages[:last], tools=tools or None, tokenize=True, add_generation_prompt=True, return_dict=True
    )
    return list(ids["input_ids"])


def generate_final_turns(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[int]],
    *,
    max_new_tokens: int,
    device: str,
    batch_size: int,
) -> list[str]:
    """Greedy decoding of the final assistant turn, left-padded in batches."""
    pad_id = tokenizer.pad_token_id
    texts: list[str] = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i : i + batch_size]
            width = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, prompt in enumerate(chunk):
                ids[row, width - len(prompt) :] = torch.tensor(prompt)
                mask[row, width - len(prompt) :] = 1
            generated = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=pad_id,
            )
            for row in generated[:, width:].cpu().tolist():
                texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return texts


def evaluate(
    base_model_dir: str | Path,
    adapter_state: Mapping[str, np.ndarray] | None,
    heldout: Sequence[Mapping[str, Any] | TrainingExample],
    *,
    config: LoraTrainingConfig | None = None,
    verifiers: VerifierRegistry = VERIFIERS,
    max_new_tokens: int = 32,
    batch_size: int = 8,
) -> EvalResult:
    """Evaluate base and base+adapter on held-out trajectories.

    Parameters
    ----------
    adapter_state
        LoRA tensors (peft names) or ``None`` to evaluate the base model alone.
    config
        The adapter's LoRA shape (r, alpha, target modules); defaults to
        ``LoraTrainingConfig()``. Its ``max_length`` and ``device`` apply here too.
    verifiers
        Task-success checks by task type; types without a verifier get no success figure.
    max_new_tokens
        Greedy decoding budget of the final turn; 0 skips generation (log-likelihood only).
    """
    config = config or LoraTrainingConfig()
    device = resolve_device(config.device)
    trajectories = [h.trajectory if isinstance(h, TrainingExample) else h for h in heldout]
    base, tokenizer = load_base_model(base_model_dir, device)
    tokenized = [tokenize_trajectory(tokenizer, t, max_length=config.max_length,
                                     surrogates=config.surrogates) for t in trajectories]
    kept = [i for i, e in enumerate(tokenized) if sum(e.assistant_mask[1:]) > 0]
    trajectories = [trajectories[i] for i in kept]
    tokenized = [tokenized[i] for i in kept]
    pad_id = tokenizer.pad_token_id
    judged = [
        i
        for i, t in enumerate(trajectories)
        if max_new_tokens > 0 and str(t.get("task_type", "")) in verifiers
    ]
    prompts = [_final_turn_prompt(tokenizer, trajectories[i], config.surrogates) for i in judged]

    def successes(model: Any) -> dict[int, bool]:
        texts = generate_final_turns(
            model, tokenizer, prompts, max_new_tokens=max_new_tokens, device=device, batch_size=batch_size
        )
        out = {}
        for i, text in zip(judged, texts, strict=True):
            verifier = verifiers.get(str(trajectories[i].get("task_type", "")))
            out[i] = verifier is not None and verifier.verify(trajectories[i], text)
        return out

    base_ll = _mean_logliks(base, tokenized, pad_id, device, batch_size)
    base_ok = successes(base)
    adapter_ll: list[float | None] = [None] * len(tokenized)
    adapter_ok: dict[int, bool] = {}
    if adapter_state is not None:
        model = build_peft_model(base, config)
        load_for_config(model, adapter_state, config)
        adapter_ll = list(_mean_logliks(model, tokenized, pad_id, device, batch_size))
        adapter_ok = successes(model)
    return EvalResult(
        tuple(
            ExampleEval(
                trajectory_id=e.trajectory_id,
                task_type=str(t.get("task_type", "")),
                num_tokens=sum(e.assistant_mask[1:]),
                base_loglik=base_ll[i],
                adapter_loglik=adapter_ll[i],
                base_success=base_ok.get(i),
                adapter_success=adapter_ok.get(i) if adapter_state is not None else None,
            )
            for i, (e, t) in enumerate(zip(tokenized, trajectories, strict=True))
        )
    )
