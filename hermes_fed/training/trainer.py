"""Local LoRA training: weighted SFT, optional DPO, gradient accumulation, NaN guard, resume.

``train_adapter`` takes records in and returns records out; it never touches the event
store. Orchestration only: the losses live in ``losses.py``, the data in ``dataset.py``.

Invariants
----------
T4. A NaN or inf loss, gradient or parameter stops training with ``TrainingError`` naming
    the optimizer step and the tensor; no adapter is returned from a poisoned run.
T5. Training is a pure function of (base model, examples, pairs, config, init adapter): the
    same inputs give the same adapter, and a run resumed from a checkpoint gives the same
    adapter as an uninterrupted one. The learning rate of a step is a pure function of the
    step number (``learning_rate_at``), set before every optimizer step, so a resumed run
    follows the same schedule.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hermes_fed.errors import AdapterError, ExamplesTooLongError, TrainingError
from hermes_fed.training import losses
from hermes_fed.training.adapter import (
    adapter_state,
    base_model_sha256,
    build_peft_model,
    load_adapter_state,
    load_base_model,
    load_for_config,
    resolve_device,
    state_sha256,
)
from hermes_fed.training.config import LoraTrainingConfig
from hermes_fed.training.dataset import (
    PreferenceExample,
    TokenizedExample,
    TrainingExample,
    build_dataset,
    collate,
    dataset_sha256,
    length_buckets,
    tokenize_trajectory,
)
from hermes_fed.training.learning_rate import learning_rate_at

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
Progress = Callable[[int, int, float], None]


@dataclass(frozen=True, slots=True)
class TrainingResult:
    """What a training run produced: the adapter state and numbers about the run."""

    adapter: dict[str, np.ndarray]
    num_examples: int
    num_tokens: int
    metrics: dict[str, float]
    steps: int


def _to_device(batch: Mapping[str, np.ndarray], device: str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device) for k, v in batch.items()}


class _Schedule:
    """Micro-batch ``i`` of the run: epoch ``i // n``, bucketed batch ``i % n`` (seeded)."""

    def __init__(self, data: Sequence[TokenizedExample], config: LoraTrainingConfig) -> None:
        self._data = data
        self._config = config
        self._lengths = [len(e.input_ids) for e in data]
        self._epochs: dict[int, list[list[int]]] = {}
        self.per_epoch = math.ceil(len(data) / config.batch_size)
        ga = config.grad_accumulation
        self.steps = config.max_steps or math.ceil(config.epochs * self.per_epoch / ga)

    def micro_batch(self, i: int) -> list[TokenizedExample]:
        epoch, j = divmod(i, self.per_epoch)
        if epoch not in self._epochs:
            self._epochs = {
                epoch: length_buckets(
                    self._lengths, self._config.batch_size, seed=self._config.seed * 100_003 + epoch
                )
            }
        return [self._data[k] for k in self._epochs[epoch][j]]


def _fingerprint(
    config: LoraTrainingConfig,
    base_sha: str,
    data_sha: str,
    init: Mapping[str, np.ndarray] | None,
    pairs_sha: str,
) -> str:
    cfg = config.to_dict()
    for volatile in ("device", "checkpoint_every"):
        cfg.pop(volatile)
    body = json.dumps(
        [cfg, base_sha, data_sha, state_sha256(init) if init else None, pairs_sha], sort_keys=True
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _check_init(model: Any, init: Mapping[str, np.ndarray], config: LoraTrainingConfig) -> None:
    for name, arr in init.items():
        if not np.all(np.isfinite(arr)):
            raise TrainingError(f"step 0: init_adapter tensor {name} holds NaN or inf")
    if config.frozen_a:
        current = adapter_state(model)
        for name, arr in init.items():
            if ".lora_A." in name and name in current and not np.array_equal(arr, current[name]):
                raise TrainingError(
                    f"step 0: init_adapter tensor {name} differs from the "
                    f"frozen-a A of seed {config.frozen_a_seed}; every node "
                    "must share A"
                )


def _check_gradients(model: Any, step: int) -> None:
    for name, param in model.named_parameters():
        if param.grad is not None and not torch.isfinite(param.grad).all():
            raise TrainingError(f"step {step}: gradient of {name} holds NaN or inf")


def _check_parameters(model: Any, step: int) -> None:
    for name, param in model.named_parameters():
        if param.requires_grad and not torch.isfinite(param).all():
            raise TrainingError(f"step {step}: parameter {name} holds NaN or inf")


class _Preference:
    """DPO pairs tokenized once, with reference log-probs from the initial policy."""

    def __init__(
        self,
        tokenizer: Any,
        pairs: Sequence[PreferenceExample],
        config: LoraTrainingConfig,
        model: Any,
        device: str,
    ) -> None:
        def tok(t: Mapping[str, Any]) -> TokenizedExample:
            return tokenize_trajectory(tokenizer, t, max_length=config.max_length,
                                       surrogates=config.surrogates)

        self.chosen = [tok(p.chosen) for p in pairs]
        self.rejected = [tok(p.rejected) for p in pairs]
        self.weights = torch.tensor([p.weight for p in pairs], dtype=torch.float32)
        self.pad_id = tokenizer.pad_token_id
        self.batch_size = config.batch_size
        self.device = device
        self.sha = dataset_sha256(self.chosen + self.rejected)
        model.eval()
        with torch.no_grad():
            self.ref_chosen = torch.cat(
                [self._seq_logp(model, self.chosen[i : i + 16]) for i in range(0, len(pairs), 16)]
            )
            self.ref_rejected = torch.cat(
                [self._seq_logp(model, self.rejected[i : i + 16]) for i in range(0, len(pairs), 16)]
            )

    def _seq_logp(self, model: Any, examples: Sequence[TokenizedExample]) -> torch.Tensor:
        batch = _to_device(collate(examples, self.pad_id), self.device)
        logp, rows, _ = losses.token_logprobs(
            model, batch["input_ids"], batch["attention_mask"], batch["loss_weights"]
        )
        return losses.sequence_logprobs(logp, rows, len(examples)).cpu()

    def loss(self, model: Any, step: int, beta: float) -> torch.Tensor:
        n = len(self.chosen)
        idx = [(step * self.batch_size + k) % n for k in range(min(self.batch_size, n))]
        pc = self._seq_logp(model, [self.chosen[i] for i in idx])
        pr = self._seq_logp(model, [self.rejected[i] for i in idx])
        return losses.dpo_loss(pc, pr, self.ref_chosen[idx], self.ref_rejected[idx], beta, self.weights[idx])


def _save_checkpoint(
    path: Path, step: int, model: Any, optimizer: Any, fingerprint: str, history: list[float]
) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "step": step,
            "fingerprint": fingerprint,
            "adapter": {k: torch.from_numpy(v) for k, v in adapter_state(model).items()},
            "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "history": history,
        },
        tmp,
    )
    os.replace(tmp, path)  # atomic: a crash mid-write leaves the previous checkpoint


def _load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    saved: dict[str, Any] = torch.load(path, weights_only=True)
    if saved.get("fingerprint") != fingerprint:
        log.warning("checkpoint=%s reason=inputs_changed action=start_fresh", path)
        return None
    return saved


def train_adapter(
    base_model_dir: str | Path,
    examples: Sequence[TrainingExample],
    config: LoraTrainingConfig,
    *,
    init_adapter: Mapping[str, np.ndarray] | None = None,
    preference_pairs: Sequence[PreferenceExample] = (),
    progress: Progress | None = None,
    checkpoint_dir: str | Path | None = None,
) -> TrainingResult:
    """Train a LoRA adapter on weighted examples (and optional DPO pairs).

    Parameters
    ----------
    base_model_dir
        Local Hugging Face model directory (never downloaded).
    examples
        Selected trajectories with tier weights; the SFT loss is the weighted mean NLL of
        assistant tokens.
    config
        Hyper-parameters; ``frozen_a`` keeps A at the shared seed (invariant T3).
    init_adapter
        Starting adapter (for example the federation's global adapter).
    preference_pairs
        (rejected, chosen) pairs; used when ``config.preference_loss`` is on.
    progress
        Called as ``progress(step, total_steps, loss)`` after every optimizer step.
    checkpoint_dir
        Where ``checkpoint.pt`` is written every ``config.checkpoint_every`` steps; a
        checkpoint of the same inputs found there is resumed (invariant T5).
    """
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    base, tokenizer = load_base_model(base_model_dir, device)
    data = build_dataset(tokenizer, examples, max_length=config.max_length,
                         surrogates=config.surrogates)
    if not examples:
        raise TrainingError("no training examples")
    if not data:  # every example was cut before its first assistant token (or has none)
        raise ExamplesTooLongError(f"none of {len(examples)} examples has an assistant token "
                                   f"within max_length={config.max_length}")
    model = build_peft_model(base, config)
    if init_adapter is not None:
        _check_init(model, init_adapter, config)
        try:
            load_for_config(model, init_adapter, config)
        except AdapterError as exc:
            raise TrainingError(f"step 0: init_adapter does not fit: {exc}") from exc
    pref = None
    if config.preference_loss and preference_pairs:
        pref = _Preference(tokenizer, preference_pairs, config, model, device)
    schedule = _Schedule(data, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)

    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    fingerprint = _fingerprint(
        config,
        base_model_sha256(base_model_dir),
        dataset_sha256(data),
        init_adapter,
        pref.sha if pref else "",
    )
    start, history = 0, []
    saved = _load_checkpoint(ckpt_path, fingerprint) if ckpt_path else None
    if saved is not None:
        load_adapter_state(model, {k: v.numpy() for k, v in saved["adapter"].items()})
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        start, history = int(saved["step"]), list(saved["history"])
        log.info("checkpoint=%s action=resume step=%d", ckpt_path, start)

    pad_id = tokenizer.pad_token_id
    ga = config.grad_accumulation
    num_tokens, dpo_last, started = 0, float("nan"), time.perf_counter()
    model.train()
    for step in range(start + 1, schedule.steps + 1):
        step_loss = 0.0
        for micro in range((step - 1) * ga, step * ga):
            batch = _to_device(collate(schedule.micro_batch(micro), pad_id), device)
            logp, _, weights = losses.token_logprobs(
                model, batch["input_ids"], batch["attention_mask"], batch["loss_weights"]
            )
            loss = losses.weighted_sft_loss(logp, weights)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingError(f"step {step}: loss is {value} (micro-batch {micro})")
            (loss / ga).backward()  # type: ignore[no-untyped-call]
            step_loss += value / ga
            num_tokens += int(batch["attention_mask"].sum())
        if pref is not None:
            dpo = pref.loss(model, step, config.dpo_beta)
            dpo_last = float(dpo.detach())
            if not math.isfinite(dpo_last):
                raise TrainingError(f"step {step}: DPO loss is {dpo_last}")
            (config.dpo_weight * dpo).backward()  # type: ignore[no-untyped-call]
        norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm or math.inf)
        if not torch.isfinite(norm):
            _check_gradients(model, step)
        lr = learning_rate_at(
            step,
            schedule.steps,
            peak_lr=config.lr,
            schedule=config.lr_schedule,
            warmup_steps=config.warmup_steps,
            min_lr_ratio=config.min_lr_ratio,
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        history.append(step_loss)
        if (
            ckpt_path is not None
            and config.checkpoint_every
            and step % config.checkpoint_every == 0
            and step < schedule.steps
        ):
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            _save_checkpoint(ckpt_path, step, model, optimizer, fingerprint, history)
        if progress is not None:
            progress(step, schedule.steps, step_loss)
    seconds = time.perf_counter() - started
    _check_parameters(model, schedule.steps)
    metrics = {
        "train_loss_first": history[0] if history else float("nan"),
        "train_loss_last": history[-1] if history else float("nan"),
        "train_loss_mean": float(np.mean(history)) if history else float("nan"),
        "train_seconds": seconds,
        "tokens_per_second": num_tokens / seconds if seconds > 0 else 0.0,
        "num_truncated": float(sum(e.truncated for e in data)),
        "resumed_from_step": float(start),
    }
    if pref is not None:
        metrics["dpo_loss_last"] = dpo_last
    return TrainingResult(
        adapter=adapter_state(model),
        num_examples=len(data),
        num_tokens=sum(len(e.input_ids) for e in data),
        metrics=metrics,
        steps=schedule.steps,
    )
