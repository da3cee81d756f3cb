"""The training settings of a federated round: the one source of their defaults.

``hermes-fed round run`` (flags), the coordinator's run config, the ``train`` message a
node receives (:class:`hermes_fed.federation.round_spec.RoundSpec`), ``model train`` and
the demo all derive from :class:`RoundSettings`; a setting has one name everywhere (the
field name; its flag is ``--<field-name>`` with dashes, its wire key the same).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from hermes_fed.errors import ConfigError
from hermes_fed.training.config import LoraTrainingConfig
from hermes_fed.training.learning_rate import LR_SCHEDULES

AGGREGATION_MODES: tuple[str, ...] = ("fedavg", "exact", "frozen-a")
"""Aggregation modes (``hermes_fed.aggregation``); frozen-a trains B only (FFA-LoRA)."""

_KINDS: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool,
                           "float | None": float, "int | None": int, "str | None": str}
_TRUE = frozenset({True, "1", "true", "yes", "on"})
_FALSE = frozenset({False, "0", "false", "no", "off", ""})


def wire_key(name: str) -> str:
    """A field name as a run-config / message key and a flag stem: ``local_steps`` -> ``local-steps``."""
    return name.replace("_", "-")


def coerce_fields(cls: type, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The entries of ``values`` (keys in wire or field form) that name fields of the
    dataclass ``cls``, converted to the field's type; a value that does not convert is a
    :class:`ConfigError` naming ``where``, the key and the value."""
    kinds = {f.name: _KINDS.get(str(f.type)) for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in kinds:
            continue
        kind = kinds[name]
        if kind is None or value is None:
            out[name] = value
            continue
        if kind is bool:
            flag = value.lower() if isinstance(value, str) else value
            if flag not in _TRUE and flag not in _FALSE:
                raise ConfigError(f"{where} {wire_key(name)} must be true or false, "
                                  f"got {value!r}")
            out[name] = flag in _TRUE
            continue
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where} {wire_key(name)} must be an integer, got {value!r}")
        try:
            out[name] = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} {wire_key(name)} must be {kind.__name__}, "
                              f"got {value!r}") from None
    return out


@dataclass(frozen=True, slots=True)
class RoundSettings:
    """How every node trains in a round (LoRA shape, optimiser, data length, seeds)."""

    rank: int = field(default=16, metadata={"help": "LoRA rank r (rows of A, columns of B)"})
    alpha: float = field(default=32.0, metadata={
        "help": "LoRA alpha; the update B·A is scaled by alpha / rank"})
    lr: float = field(default=2e-4, metadata={
        "help": "local AdamW peak learning rate (after warmup, before decay)"})
    local_steps: int = field(default=200, metadata={
        "help": "local optimizer steps each node takes per round"})
    lr_schedule: str = field(default="cosine", metadata={
        "help": "local learning-rate schedule after warmup, restarted every round: "
                "constant | cosine | linear"})
    warmup_steps: int = field(default=20, metadata={
        "help": "local linear warmup steps at the start of every round"})
    batch_size: int = field(default=8, metadata={"help": "local examples per optimizer step"})
    max_length: int = field(default=512, metadata={
        "help": "tokens per training example; a node counts and reports longer ones "
                "(they are cut at the end, never dropped silently)"})
    seed: int = field(default=0, metadata={"help": "seed of local data order and LoRA init"})
    frozen_a_seed: int = field(default=0, metadata={
        "help": "federation-wide seed of the LoRA A factors (frozen-a mode)"})

    def __post_init__(self) -> None:
        for name in ("rank", "local_steps", "batch_size", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{wire_key(name)} must be an integer >= 1, got {value!r}")
        for name in ("warmup_steps", "seed", "frozen_a_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{wire_key(name)} must be an integer >= 0, got {value!r}")
        for name in ("alpha", "lr"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{wire_key(name)} must be a finite number > 0, got {value!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr-schedule must be one of {LR_SCHEDULES}, "
                              f"got {self.lr_schedule!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "round settings"
                     ) -> RoundSettings:
        """Settings from wire keys (``local-steps``) or field names; others are ignored."""
        return cls(**coerce_fields(cls, values, where))

    def to_mapping(self) -> dict[str, int | float | str]:
        """The wire form: ``{"rank": 16, "local-steps": 200, ...}``."""
        return {wire_key(f.name): getattr(self, f.name) for f in fields(self)}

    def training_config(self, mode: str, device: str = "cpu") -> LoraTrainingConfig:
        """The node's :class:`LoraTrainingConfig` for a round of aggregation ``mode``."""
        if mode not in AGGREGATION_MODES:
            raise ConfigError(f"mode must be one of {AGGREGATION_MODES}, got {mode!r}")
        return LoraTrainingConfig(
            r=self.rank, alpha=float(self.alpha), lr=float(self.lr),
            lr_schedule=self.lr_schedule, warmup_steps=self.warmup_steps,
            max_steps=self.local_steps, batch_size=self.batch_size,
            max_length=self.max_length, seed=self.seed, device=device,
            frozen_a=mode == "frozen-a", frozen_a_seed=self.frozen_a_seed)
