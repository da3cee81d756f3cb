"""The coordinator's adapter registry, kept in its own event log.

Each global adapter is a PEFT directory under ``<coordinator dir>/adapters/<version>/``
(written by ``hermes_fed.training.adapter.save_adapter``, so transformers/peft/vLLM load
it) and one ``AdapterVersionPublished{version, parent, sha256, lineage}`` event on the
stream ``model-global`` of the coordinator's event store (``coordinator.db``, tenant
``coordinator``). The log is the source of truth: the registry's view is a fold over that
stream; files are content-addressed by ``sha256`` (``state_sha256`` of the tensors) and
checked on load. Appends use the stream version the registry last saw, so two publishers
cannot both claim the next version (invariant 3).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from hermes_fed.errors import FederationError

if TYPE_CHECKING:
    from hermes_fed.store import EventStore

logger = logging.getLogger(__name__)

COORDINATOR_TENANT = "coordinator"
MODEL_STREAM = "model-global"
STORE_FILE = "coordinator.db"


@dataclass(frozen=True, slots=True)
class AdapterVersion:
    """One published global adapter."""

    version: str
    parent: str | None
    sha256: str
    lineage: Mapping[str, Any]
    position: int

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "parent": self.parent, "sha256": self.sha256,
                "lineage": dict(self.lineage), "position": self.position}


def store_url(root: Path) -> str:
    return f"sqlite:///{(root / STORE_FILE).resolve()}"


class AdapterRegistry:
    """Publish and read global adapter versions (files + the coordinator's event log)."""

    def __init__(self, root: Path, store: EventStore) -> None:
        self.root = root
        self._store = store

    @classmethod
    def open(cls, root: str | Path) -> AdapterRegistry:
        from hermes_fed.store.sql import SqlEventStore

        path = Path(root)
        path.mkdir(parents=True, exist_ok=True)
        # Adapters are model weights, not personal data: the coordinator log needs no key ring,
        # so it skips open_store's warning about a log opened without one (meant for tenants).
        return cls(path, SqlEventStore(store_url(path), COORDINATOR_TENANT))

    @classmethod
    def open_existing(cls, root: str | Path) -> AdapterRegistry:
        """The registry of a coordinator directory whose log exists; creates nothing.

        For commands that read (``coordinator versions``, ``model history``, ``ab status``)
        or change what is there (promote, rollback, conclude): a mistyped ``--dir`` is an
        error, not a new empty log that reads as success.

        Raises
        ------
        LogNotFoundError
            When ``root`` holds no coordinator log (or one without events).
        """
        from hermes_fed.store.location import LogNotFoundError, require_existing_log
        from hermes_fed.store.sql import SqlEventStore

        path = Path(root)
        if not (path / STORE_FILE).is_file():
            raise LogNotFoundError(
                f"no coordinator log at {path / STORE_FILE} (reading never creates one: check "
                "--dir; the log starts with the first round or `ab create`)")
        require_existing_log(store_url(path), COORDINATOR_TENANT)
        return cls(path, SqlEventStore(store_url(path), COORDINATOR_TENANT))

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> AdapterRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def store(self) -> EventStore:
        """The coordinator's event store (rounds are logged there too)."""
        return self._store

    # -- reading ---------------------------------------------------------------------
    def versions(self) -> list[AdapterVersion]:
        """Every published version, oldest first."""
        return [
            AdapterVersion(version=str(e.data["version"]), parent=e.data.get("parent"),
                           sha256=str(e.data["sha256"]), lineage=dict(e.data["lineage"]),
                           position=e.position)
            for e in self._store.read_stream(MODEL_STREAM)
            if e.type == "AdapterVersionPublished"
        ]

    def latest(self) -> AdapterVersion | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def get(self, version: str) -> AdapterVersion:
        for v in self.versions():
            if v.version == version:
                return v
        raise FederationError(f"adapter version {version!r} is not in the registry")

    def path(self, version: str) -> Path:
        return self.root / "adapters" / version

    def load(self, version: str) -> dict[str, np.ndarray]:
        """The tensors of ``version``; the file's sha256 must match the published one."""
        from hermes_fed.training.adapter import load_adapter, state_sha256

        entry = self.get(version)
        saved = load_adapter(self.path(version))
        if state_sha256(saved.state) != entry.sha256:
            raise FederationError(f"adapter {version} on disk does not match its published "
                                  f"sha256 {entry.sha256[:12]}")
        return saved.state

    # -- publishing ------------------------------------------------------------------
    def publish(self, tensors: Mapping[str, np.ndarray], *, parent: str | None,
                lineage: Mapping[str, Any], training_config: Any,
                base_model_dir: str | None = None) -> AdapterVersion:
        """Write the adapter files, then append ``AdapterVersionPublished``."""
        from hermes_fed.events import new_event
        from hermes_fed.events.coordinator import AdapterVersionPublished
        from hermes_fed.training.adapter import (
            AdapterManifest,
            base_model_sha256,
            save_adapter,
            state_sha256,
        )

        sha = state_sha256(tensors)
        seen = len(self._store.read_stream(MODEL_STREAM))
        version = f"v{seen + 1}-{sha[:12]}"
        base_sha = base_model_sha256(base_model_dir) if base_model_dir else ""
        manifest = AdapterManifest(base_model_sha256=base_sha, parent_version=parent)
        save_adapter(self.path(version), tensors, training_config, manifest,
                     base_model_dir=base_model_dir)
        # catalog records are dataclasses made by @event_type (opaque to mypy)
        record = cast(Any, AdapterVersionPublished)(version=version, parent=parent, sha256=sha,
                                                    lineage=dict(lineage))
        results = self._store.append([new_event(record, stream_id=MODEL_STREAM)],
                                     expected_versions={MODEL_STREAM: seen})
        logger.info("version=%s parent=%s action=publish", version, parent)
        return AdapterVersion(version=version, parent=parent, sha256=sha,
                              lineage=dict(lineage), position=results[0].position)
