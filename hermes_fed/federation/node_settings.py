"""A node's federation settings: what ``flower-supernode --node-config`` carries.

Written by whoever starts a SuperNode (``hermes-fed node join``, the local federation of
tests and the demo) with :meth:`NodeSettings.to_node_config`, read by the node's
ClientApps with :meth:`NodeSettings.from_node_config`. Keys are the fields' wire form
(``tenant-id``, ``store-schema``, ``k-min``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from hermes_fed.errors import ConfigError
from hermes_fed.federation.settings import coerce_fields, wire_key

if TYPE_CHECKING:
    from hermes_fed.quality.config import QualityConfig

SELECTIONS: tuple[str, ...] = ("quality", "all")


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """A node's federation settings (``--node-config``)."""

    tenant_id: str = field(metadata={"help": "the tenant this node serves"})
    store: str = field(metadata={"help": "the node's event-store URL"})
    base_model: str = field(metadata={"help": "local HF base-model directory"})
    store_schema: str = field(default="", metadata={
        "help": "PostgreSQL schema of the tenant's log; '' = the database's default"})
    keyring: str = field(default="", metadata={"help": "key-ring file of the store; '' = none"})
    k_min: int = field(default=20, metadata={"help": "egress small-cell threshold"})
    heldout_fraction: float = field(default=0.2, metadata={"help": "share kept for evaluation"})
    split_seed: int = field(default=0, metadata={"help": "seed of the train/held-out split"})
    selection: str = field(default="quality", metadata={
        "help": "quality: train on the quality pipeline's selection of the train split (tier "
                "weights, near-duplicates out); all: every train trajectory with weight 1"})
    dedupe_threshold: float | None = field(default=None, metadata={
        "help": "MinHash similarity at which two trajectories are near-duplicates "
                "(overrides [quality.selection] dedupe_threshold, 0.8 by default); 1.0 keeps "
                "all but exact duplicates"})
    quality_config: str = field(default="", metadata={
        "help": "a TOML file whose [quality] table scores and selects (node join passes the "
                "node's own --config); '' = QualityConfig defaults"})
    exclude_used: bool = field(default=False, metadata={
        "help": "leave out trajectories a completed local `node train` run used; default "
                "false: the global adapter never saw them, so a round trains on them"})
    node_dir: str = field(default="", metadata={
        "help": "the node's own directory (delivered adapters, its traffic plan); '' = none"})

    def __post_init__(self) -> None:
        for name in ("tenant_id", "store", "base_model"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"node-config {wire_key(name)} must be a non-empty "
                                  f"string, got {getattr(self, name)!r}")
        from hermes_fed.federation.messages import MAX_VERSION_ID, VERSION_ID

        if len(self.tenant_id) > min(64, MAX_VERSION_ID) or not VERSION_ID.fullmatch(
                self.tenant_id):
            # replies and reports name the tenant: a token, as the egress guard wants
            raise ConfigError(f"node-config tenant-id must be 1..64 characters of letters, "
                              f"digits and ._:+- (starting with a letter or digit), got "
                              f"{self.tenant_id!r}")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"node-config selection must be one of {SELECTIONS}, "
                              f"got {self.selection!r}")
        if self.k_min < 1:
            raise ConfigError(f"node-config k-min must be >= 1, got {self.k_min!r}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ConfigError(f"node-config heldout-fraction must be in (0, 1), "
                              f"got {self.heldout_fraction!r}")
        if self.dedupe_threshold is not None and not 0.0 < float(self.dedupe_threshold) <= 1.0:
            raise ConfigError(f"node-config dedupe-threshold must be in (0, 1], "
                              f"got {self.dedupe_threshold!r}")

    def quality(self) -> QualityConfig:
        """The node's :class:`~hermes_fed.quality.config.QualityConfig`: its TOML's
        ``[quality]`` table (defaults without one), ``dedupe-threshold`` applied."""
        import dataclasses

        from hermes_fed.quality.config import QualityConfig

        config = (QualityConfig.from_toml(self.quality_config) if self.quality_config
                  else QualityConfig())
        if self.dedupe_threshold is None:
            return config
        selection = dataclasses.replace(config.selection,
                                        dedupe_threshold=float(self.dedupe_threshold))
        return dataclasses.replace(config, selection=selection)

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any]) -> NodeSettings:
        values = coerce_fields(cls, node_config, "node-config")
        missing = [wire_key(f.name) for f in fields(cls)
                   if f.default is MISSING and f.name not in values]
        if missing:
            raise ConfigError(f"node-config is missing {', '.join(missing)}")
        return cls(**values)

    def to_node_config(self) -> dict[str, str | int | float]:
        """The ``--node-config`` entries (empty optional strings left out)."""
        out: dict[str, str | int | float] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (value == "" and f.name not in ("tenant_id", "store",
                                                               "base_model")):
                continue
            out[wire_key(f.name)] = value
        return out
