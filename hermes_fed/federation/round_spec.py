"""What a ``train`` or ``evaluate`` message asks a node to do: :class:`RoundSpec`.

The coordinator builds it (:meth:`RoundSpec.to_record` -> the message's ``config``
ConfigRecord); the node reads it back (:meth:`RoundSpec.from_record`). Keys are the wire
form of the fields: ``round``, ``mode``, ``parent-version``, the
:class:`~hermes_fed.federation.settings.RoundSettings` keys, and the update-shaping keys of
privacy rounds (``dp-mode``, ``dp-clip``, ``dp-noise-std``, ``secagg-clipping-range``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord

from hermes_fed.errors import ConfigError, FederationError
from hermes_fed.federation.settings import AGGREGATION_MODES, RoundSettings, coerce_fields
from hermes_fed.training.config import LoraTrainingConfig

DP_MODES: tuple[str, ...] = ("off", "server", "client")
"""Who adds differential-privacy noise: nobody, the coordinator, or every node."""

LEGACY_KEYS: dict[str, str] = {"r": "rank", "max-steps": "local-steps"}
"""Keys a coordinator of session 7 and before sent, by their name now."""
LEGACY_ABSENT: dict[str, object] = {"lr-schedule": "constant", "warmup-steps": 0}
"""What a message without these keys means: a coordinator that had no schedule ran a
constant learning rate without warmup (not today's defaults)."""


@dataclass(frozen=True, slots=True)
class UpdateShaping:
    """How a node shapes its update before it leaves, in privacy rounds.

    ``dp_clip``: the L2 bound the node clips its update to (0: the node does not clip);
    ``dp_noise_std``: the Gaussian noise the node adds (client DP; 0: none);
    ``secagg_clipping_range``: SecAgg+ quantises values in ``[-range, range]``.
    """

    dp_mode: str = "off"
    dp_clip: float = 0.0
    dp_noise_std: float = 0.0
    secagg_clipping_range: float = 1.0

    def __post_init__(self) -> None:
        if self.dp_mode not in DP_MODES:
            raise ConfigError(f"dp-mode must be one of {DP_MODES}, got {self.dp_mode!r}")
        for name in ("dp_clip", "dp_noise_std"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0, got {value!r}")
        if not (math.isfinite(self.secagg_clipping_range) and self.secagg_clipping_range > 0):
            raise ConfigError(f"secagg-clipping-range must be > 0, "
                              f"got {self.secagg_clipping_range!r}")


@dataclass(frozen=True, slots=True)
class RoundSpec:
    """One round's instruction to a node: which round, how to aggregate, from what, how."""

    round: int
    mode: str
    parent_version: str
    settings: RoundSettings = field(default_factory=RoundSettings)
    shaping: UpdateShaping = field(default_factory=UpdateShaping)

    def __post_init__(self) -> None:
        if self.mode not in AGGREGATION_MODES:
            raise ConfigError(f"mode must be one of {AGGREGATION_MODES}, got {self.mode!r}")
        if self.round < 0:
            raise ConfigError(f"round must be >= 0, got {self.round!r}")

    def training_config(self, device: str = "cpu") -> LoraTrainingConfig:
        return self.settings.training_config(self.mode, device)

    def to_record(self) -> ConfigRecord:
        s = self.shaping
        return ConfigRecord({
            "round": self.round, "mode": self.mode, "parent-version": self.parent_version,
            **self.settings.to_mapping(),
            "dp-mode": s.dp_mode, "dp-clip": float(s.dp_clip),
            "dp-noise-std": float(s.dp_noise_std),
            "secagg-clipping-range": float(s.secagg_clipping_range),
        })

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RoundSpec:
        """Parse a message's ``config``; a missing or bad key is a :class:`FederationError`."""
        values = {LEGACY_KEYS.get(k, k): v for k, v in record.items()}
        values = {**LEGACY_ABSENT, **values}
        try:
            shaping = UpdateShaping(**coerce_fields(UpdateShaping, values, "round config"))
            settings = RoundSettings.from_mapping(values, "round config")
            return cls(round=int(record["round"]), mode=str(record["mode"]),
                       parent_version=str(record["parent-version"]), settings=settings,
                       shaping=shaping)
        except KeyError as exc:
            raise FederationError(f"round config is missing {exc.args[0]!r}") from None
        except (ConfigError, TypeError, ValueError) as exc:
            raise FederationError(f"round config is bad: {exc}") from None
