"""The node's side of ``deploy``: install the delivered adapters, load them, apply the plan.

In order, and nothing of the plan is applied unless every step before it succeeded:

1. **verify** every delivered adapter (its tensors against its sha256, its LoRA config),
   that every version the plan names is delivered or already on the node's disk, and that
   a version already on disk holds the same tensors (versions are immutable) -- before
   anything is written;
2. **install** each new adapter as a PEFT directory whose ``adapter_config.json`` names the
   node's own base model, under ``<adapters dir>/<version>/`` (staged, then renamed in:
   :func:`tenant_node.gateway.plans.install_adapter`);
3. **load** every adapter version of the plan into the node's upstream under its versioned
   name (vLLM's ``POST /v1/load_lora_adapter``; a name it holds already is left alone),
   when the node's TOML has a ``[gateway]`` table;
4. **record** ``TrafficPlanApplied`` (actor ``coordinator``) in the node's log, unless the
   current plan is this plan already (a re-delivery records nothing and replies the same).
   The gateway picks the plan up from the log.

A failure raises a :class:`~hermes_fed.errors.DeployError` (or a config/store error): the
egress guard turns it into a reason code, no plan is recorded and the node's users stay on
its last applied plan. Adapters installed before a failed load stay on disk: they are
verified, immutable, and the next delivery finds them.

Where the node keeps adapters and which upstream it loads them into come from its TOML
(``NodeSettings.quality_config``, the ``--config`` ``node join`` passes: its ``data_dir``
and ``[gateway]`` table, :func:`tenant_node.config.node_serving`), else from
``NodeSettings.node_dir`` (``<node_dir>/adapters``, no upstream).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np

from hermes_fed.errors import (
    AdapterError,
    AdapterIntegrityError,
    ConfigError,
    FederationError,
    PlanAdapterMissingError,
    UpstreamLoadError,
)
from hermes_fed.federation import delivery
from hermes_fed.federation import messages as wire
from hermes_fed.federation.node_settings import NodeSettings
from hermes_fed.serving.plan import BASE_VERSION
from hermes_fed.serving.wire import WireError
from hermes_fed.training.adapter import ADAPTER_WEIGHTS, state_sha256
from hermes_fed.training.config import LoraTrainingConfig
from tenant_node.config import GatewayConfig, NodeServing
from tenant_node.gateway.plans import adapter_present, current_plan, install_adapter, record_plan

from .egress import ReplyPayload
from .local_round import open_node_log

logger = logging.getLogger(__name__)

ACTOR = "coordinator"


@dataclass(frozen=True, slots=True)
class Delivered:
    """One verified adapter of a delivery."""

    spec: delivery.DeployAdapter
    config: LoraTrainingConfig
    tensors: Mapping[str, np.ndarray]


def node_serving(settings: NodeSettings) -> NodeServing:
    """The node's adapters directory and upstream (see the module docstring)."""
    from hermes_fed.store.location import is_node_config, read_toml
    from tenant_node.config import node_serving as from_toml

    if settings.quality_config and is_node_config(read_toml(settings.quality_config)):
        return from_toml(settings.quality_config)
    if settings.node_dir:
        return NodeServing(Path(settings.node_dir) / "adapters", None)
    raise ConfigError("deploy: the node has no adapters directory: join with --config "
                      "node.toml (its data_dir and [gateway]) or set node-config node-dir")


def _verified(spec: delivery.DeploySpec,
              tensors: Sequence[Mapping[str, np.ndarray]]) -> list[Delivered]:
    if len(tensors) != len(spec.adapters):
        raise FederationError(f"deploy: {len(spec.adapters)} adapters named, "
                              f"{len(tensors)} tensor records sent")
    out = []
    for adapter, state in zip(spec.adapters, tensors, strict=True):
        if adapter.version == BASE_VERSION:
            raise AdapterError(f"deploy: {BASE_VERSION!r} names the base model, not an adapter")
        try:
            config = LoraTrainingConfig.from_dict(dict(adapter.lora_config))
        except (ValueError, TypeError) as exc:
            raise AdapterError(f"deploy: adapter {adapter.version} LoRA config: {exc}") from None
        if not state or any(np.asarray(a).dtype != np.float32 for a in state.values()):
            raise AdapterError(f"deploy: adapter {adapter.version} must be float32 tensors")
        if state_sha256(state) != adapter.sha256:
            raise AdapterIntegrityError(f"deploy: adapter {adapter.version} tensors do not "
                                        f"match sha256 {adapter.sha256[:12]}")
        out.append(Delivered(adapter, config, state))
    return out


def _on_disk_sha256(adapters_dir: Path, version: str) -> str | None:
    from safetensors.numpy import load_file

    weights = adapters_dir / version / ADAPTER_WEIGHTS
    try:
        return state_sha256(load_file(str(weights)))
    except (OSError, ValueError):
        return None  # not a safetensors adapter: it cannot be shown to be the same one


def _check_applicable(spec: delivery.DeploySpec, adapters: Sequence[Delivered],
                      adapters_dir: Path) -> list[Delivered]:
    """The delivered adapters still to write; raises when the plan cannot be served."""
    sent = {a.spec.version for a in adapters}
    missing = [v for v in spec.plan.versions if v != BASE_VERSION and v not in sent
               and not adapter_present(adapters_dir, v)]
    if missing:
        raise PlanAdapterMissingError(f"deploy: plan {spec.plan.test_id} names {missing!r}; "
                                      f"the node has no adapter for them and none was sent")
    to_write = []
    for adapter in adapters:
        version = adapter.spec.version
        if not (adapters_dir / version).exists():
            to_write.append(adapter)
        elif _on_disk_sha256(adapters_dir, version) != adapter.spec.sha256:
            raise AdapterIntegrityError(f"deploy: the node holds other tensors under "
                                        f"{version}; a version is never replaced in place")
    return to_write


def _install(adapter: Delivered, adapters_dir: Path, base_model: str) -> None:
    from hermes_fed.training.adapter import AdapterManifest, save_adapter

    lineage = adapter.spec.lineage
    parent = lineage.get("parent")
    manifest = AdapterManifest(base_model_sha256=str(lineage.get("base_model_sha256", "")),
                               parent_version=parent if isinstance(parent, str) else None)
    adapters_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=adapters_dir, prefix=".deploy-") as staging:
        written = save_adapter(Path(staging) / adapter.spec.version, adapter.tensors,
                               adapter.config, manifest, base_model_dir=base_model)
        install_adapter(adapters_dir, adapter.spec.version, written)
    logger.info("event=adapter_installed version=%s", adapter.spec.version)


def _load_upstream(gateway: GatewayConfig, adapters_dir: Path, versions: Sequence[str]) -> None:
    from tenant_node.gateway.upstream import Upstream

    seen_as = (PurePath(gateway.upstream_adapters_dir) if gateway.upstream_adapters_dir
               else adapters_dir.resolve())

    async def load() -> None:
        upstream = Upstream(gateway.upstream_url, gateway.upstream_timeout_s,
                            gateway.resolved_upstream_key())
        try:
            for version in versions:
                await upstream.load_adapter(version, str(seen_as / version))
        finally:
            await upstream.close()

    # a thread of its own: the handler may run where an event loop is running already
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deploy-load") as pool:
        try:
            pool.submit(asyncio.run, load()).result()
        except WireError as exc:
            raise UpstreamLoadError(f"deploy: the upstream did not load the plan's adapters "
                                    f"(HTTP {exc.status})") from None


def apply(settings: NodeSettings, spec: delivery.DeploySpec,
          tensors: Sequence[Mapping[str, np.ndarray]]) -> ReplyPayload:
    """Verify, install, load and record (module docstring); the reply's content."""
    serving = node_serving(settings)
    adapters_dir = serving.adapters_dir
    adapters = _verified(spec, tensors)
    store = open_node_log(settings)
    try:
        to_write = _check_applicable(spec, adapters, adapters_dir)
        for adapter in to_write:
            _install(adapter, adapters_dir, settings.base_model)
        if serving.gateway is not None:
            _load_upstream(serving.gateway, adapters_dir,
                           [v for v in spec.plan.versions if v != BASE_VERSION])
        applied = current_plan(store)
        if applied is not None and applied.plan == spec.plan:
            logger.info("event=plan_already_applied test_id=%s", spec.plan.test_id)
        else:
            record_plan(store, spec.plan, actor=ACTOR)
    finally:
        store.close()
    return ReplyPayload(
        metrics={delivery.DEPLOY_INSTALLED: float(len(adapters))},
        versions={delivery.APPLIED_PLAN: spec.plan.test_id, wire.TENANT_ID: settings.tenant_id})
