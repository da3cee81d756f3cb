"""The plan the gateway routes by: picked up from the node's log, applied once its adapters
are loaded into the upstream under their versioned names.

The log is polled (``plan_poll_s``) for a newer ``TrafficPlanApplied``. A new plan takes
effect only after every adapter version it names is loaded upstream; until then the
previous plan keeps serving and ``hermes_gateway_plan_pending`` is 1 (an adapter that fails
to load never sends anyone to a model that is not there). Without any plan, everyone gets
the base model.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePath

from hermes_fed.serving.plan import BASE_VERSION, PlanArm, TrafficPlan
from hermes_fed.serving.wire import WireError
from hermes_fed.store import EventStore

from .metrics import GatewayMetrics
from .plans import current_plan
from .upstream import Upstream

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one call goes: the upstream model name and what the session records."""

    upstream_model: str
    version: str
    arm: str | None
    test_id: str | None
    by_user: bool


class PlanRouter:
    """The current plan, its adapters, and the routing of one call."""

    def __init__(self, store: EventStore, upstream: Upstream, reader: ThreadPoolExecutor,
                 metrics: GatewayMetrics, *, secret: bytes, base_model: str, model_name: str,
                 upstream_adapters_dir: PurePath) -> None:
        self._store = store
        self._upstream = upstream
        self._reader = reader
        self._metrics = metrics
        self._secret = secret
        self.base_model = base_model
        self.model_name = model_name
        self._adapters_dir = upstream_adapters_dir
        self.plan: TrafficPlan | None = None
        self.plan_version = 0
        self.pending = False
        self._loaded: set[str] = set()

    def accepts(self, model: str) -> bool:
        """Names an agent may send: the gateway's model name, the base's, or a plan's arm or
        version (the plan routes either way; an agent cannot pick its own arm)."""
        if model in (self.model_name, self.base_model, BASE_VERSION):
            return True
        plan = self.plan
        return plan is not None and any(model in (a.name, a.version) for a in plan.arms)

    def served_names(self) -> list[str]:
        names = [self.model_name]
        if self.plan is not None:
            names.extend(v for v in self.plan.versions if v not in names)
        return names

    def upstream_name(self, version: str) -> str:
        return self.base_model if version == BASE_VERSION else version

    def route(self, user_ref: str | None) -> Decision:
        plan = self.plan
        if plan is None:
            return Decision(self.base_model, BASE_VERSION, None, None, bool(user_ref))
        route = plan.route(self._secret, user_ref)
        arm: PlanArm = route.arm
        return Decision(self.upstream_name(arm.version), arm.version, arm.name, plan.test_id,
                        route.by_user)

    async def ensure_loaded(self, versions: tuple[str, ...]) -> None:
        for version in versions:
            if version == BASE_VERSION or version in self._loaded:
                continue
            await self._upstream.load_adapter(version, str(self._adapters_dir / version))
            self._loaded.add(version)

    async def reload(self, version: str) -> None:
        """The upstream lost ``version`` (it restarted): load it again under the same name
        (same files: a version never changes)."""
        self._loaded.discard(version)
        await self.ensure_loaded((version,))

    async def refresh(self) -> bool:
        """Apply a newer plan from the log if there is one; True when the plan changed."""
        applied = await asyncio.get_running_loop().run_in_executor(
            self._reader, current_plan, self._store, self.plan_version)
        if applied is None:
            return False
        try:
            await self.ensure_loaded(applied.plan.versions)
        except WireError as exc:
            if not self.pending:
                log.warning("event=plan_pending test_id=%s reason=%s", applied.plan.test_id, exc)
            self.pending = True
            self._metrics.plan_pending.set(1)
            return False
        self.plan, self.plan_version, self.pending = applied.plan, applied.version, False
        self._metrics.plan_pending.set(0)
        log.info("event=plan_applied test_id=%s arms=%s plan_version=%d", applied.plan.test_id,
                 ",".join(f"{a.name}={a.version}:{a.share}" for a in applied.plan.arms),
                 applied.version)
        return True

    async def watch(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except Exception as exc:  # a database hiccup must not stop the watcher
                log.warning("event=plan_refresh_failed error=%s", type(exc).__name__)
