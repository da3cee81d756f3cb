"""Validated configuration of local LoRA training (LoRA: Hu et al., 2021, arXiv 2106.09685)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from hermes_fed.errors import ConfigError
from hermes_fed.training.learning_rate import LR_SCHEDULES

DEFAULT_TARGET_MODULES: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


@dataclass(frozen=True, slots=True)
class LoraTrainingConfig:
    """How a node trains one adapter; every default is documented in its ``help``."""

    r: int = field(default=8, metadata={"help": "LoRA rank (rows of A, columns of B)."})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha; the update is scaled by alpha / r."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input, [0, 1)."})
    target_modules: tuple[str, ...] = field(
        default=DEFAULT_TARGET_MODULES,
        metadata={"help": "Names of the linear layers that get adapters (peft matching)."},
    )
    lr: float = field(
        default=1e-3, metadata={"help": "AdamW peak learning rate (after warmup, before decay)."}
    )
    lr_schedule: str = field(
        default="constant",
        metadata={
            "help": "Learning rate after warmup: constant, or cosine / linear decay from lr "
            "towards min_lr_ratio * lr over the remaining steps."
        },
    )
    warmup_steps: int = field(
        default=0, metadata={"help": "Optimizer steps of linear warmup from lr / warmup_steps to lr."}
    )
    min_lr_ratio: float = field(
        default=0.0, metadata={"help": "Where cosine / linear decay ends, as a share of lr, [0, 1]."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    epochs: int = field(default=1, metadata={"help": "Passes over the data when max_steps is None."})
    max_steps: int | None = field(
        default=None, metadata={"help": "Optimizer steps; overrides epochs when set."}
    )
    batch_size: int = field(default=8, metadata={"help": "Examples per micro-batch."})
    grad_accumulation: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    max_length: int = field(
        default=512, metadata={"help": "Tokens per example; longer ones are cut at the end."}
    )
    max_grad_norm: float | None = field(
        default=1.0, metadata={"help": "Gradient clipping norm; None disables it."}
    )
    seed: int = field(default=0, metadata={"help": "Seeds data order, LoRA init and dropout."})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu or cuda."})
    frozen_a: bool = field(
        default=False,
        metadata={"help": "Initialise LoRA A from frozen_a_seed and never train it (FFA-LoRA)."},
    )
    frozen_a_seed: int = field(
        default=0, metadata={"help": "The federation-wide seed of A in frozen-a mode."}
    )
    preference_loss: bool = field(
        default=False, metadata={"help": "Add a DPO loss on (rejected, chosen) pairs."}
    )
    dpo_beta: float = field(default=0.1, metadata={"help": "DPO temperature beta (> 0)."})
    dpo_weight: float = field(default=1.0, metadata={"help": "Weight of the DPO term beside the SFT loss."})
    checkpoint_every: int = field(
        default=0, metadata={"help": "Steps between resumable checkpoints; 0 disables them."}
    )
    surrogates: bool = field(
        default=True, metadata={"help": "Render the log's placeholders (<PERSON_1>) as made-up "
                                "values of their type, so training text is shaped like the raw "
                                "requests the model serves (hermes_fed.privacy.surrogates)."}
    )

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"LoraTrainingConfig.{name} {why}, got {getattr(self, name)!r}")

        for name in ("r", "epochs", "batch_size", "grad_accumulation", "max_length"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "must be an integer >= 1")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise bad("max_steps", "must be None or an integer >= 1")
        for name in ("alpha", "lr", "dpo_beta"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise bad(name, "must be a finite number > 0")
        for name in ("weight_decay", "dpo_weight"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise bad(name, "must be a finite number >= 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", "must be 'constant', 'cosine' or 'linear'")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise bad("warmup_steps", "must be an integer >= 0")
        if (
            not isinstance(self.min_lr_ratio, int | float)
            or not math.isfinite(self.min_lr_ratio)
            or not 0.0 <= self.min_lr_ratio <= 1.0
        ):
            raise bad("min_lr_ratio", "must be a finite number in [0, 1]")
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "must be in [0, 1)")
        if self.max_grad_norm is not None and not (
            math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0
        ):
            raise bad("max_grad_norm", "must be None or a finite number > 0")
        if (
            not isinstance(self.target_modules, tuple)
            or not self.target_modules
            or not all(isinstance(m, str) and m for m in self.target_modules)
        ):
            raise bad("target_modules", "must be a non-empty tuple of module names")
        if self.device not in ("auto", "cpu", "cuda"):
            raise bad("device", "must be 'auto', 'cpu' or 'cuda'")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            raise bad("checkpoint_every", "must be an integer >= 0")
        for name in ("frozen_a", "preference_loss", "surrogates"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "must be true or false")

    @property
    def scaling(self) -> float:
        """The factor alpha / r applied to B·A."""
        return self.alpha / self.r

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples become lists)."""
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoraTrainingConfig:
        """Inverse of ``to_dict``; unknown keys raise ``ValueError``.

        A dict written before ``lr_schedule`` existed describes a run at a constant learning
        rate, so it loads as ``lr_schedule="constant"`` whatever the current default is.
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"LoraTrainingConfig: unknown keys {unknown}")
        values = dict(data)
        values.setdefault("lr_schedule", "constant")
        if "target_modules" in values:
            values["target_modules"] = tuple(values["target_modules"])
        return cls(**values)

    def to_peft(self, base_model_dir: str | None = None) -> Any:
        """The equivalent ``peft.LoraConfig`` (bias none, causal LM)."""
        from peft import LoraConfig, TaskType

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,  # type: ignore[arg-type]  # peft accepts floats
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            bias="none",
            task_type=TaskType.CAUSAL_LM,
            base_model_name_or_path=base_model_dir,
        )
