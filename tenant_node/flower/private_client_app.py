"""The node's ClientApp for privacy rounds: DP (client/server) and SecAgg+.

The Flower app ``coordinator/apps/secagg_app`` names this ClientApp; ``hermes-fed round run
--dp ...`` or ``--secagg`` submits that app instead of the plain one, so the same
SuperNodes serve both. Messages:

* ``train`` without SecAgg+: like :func:`tenant_node.flower.client_app.train`, but the node
  sends ``global + Δ`` with ``Δ`` clipped to ``dp-clip`` and, in client mode, noised
  (:mod:`tenant_node.flower.update_shaping`); nothing about the raw update leaves.
* ``train`` under SecAgg+ (``secaggplus`` config record): Flower's ``secaggplus_mod`` runs
  the four protocol stages; at ``collect masked vectors`` it calls the handler below with
  the legacy ``FitIns`` (the global adapter as a list, its names in ``adapter-keys``),
  which trains, shapes ``Δ`` (clipped before it becomes the contribution), checks the
  quantisation range and answers a ``FitRes`` of ``Δ`` and its weight (num-examples, or 1
  under DP); the mod masks it.
* ``evaluate`` and ``query.status``: the plain handlers.

Every reply passes the egress guard (invariant 8; E7 for SecAgg+ replies), and a handler
exception leaves as its type name only (E6).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable

from hermes_fed.errors import EgressError
from tenant_node.flower import client_app
from tenant_node.flower.egress import (
    SECAGG_RECORD,
    ReplyPayload,
    build_reply,
    build_secagg_fit_reply,
    check_content,
    check_secagg_content,
    guarded_reply,
)
from tenant_node.flower.local_round import NodeSettings, RoundSpec, load_local_data, train_locally
from tenant_node.flower.update_shaping import apply_delta, check_secagg_range, shape_update

logger = logging.getLogger(__name__)

FITINS_CONFIG = "fitins.config"


def _guard(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """E6 for every message; E1-E5 for plain replies, E7 for SecAgg+ replies."""
    policy = client_app._policy(context)

    def check(content: RecordDict) -> None:
        if SECAGG_RECORD in content.config_records:
            check_secagg_content(content, policy)
        else:
            check_content(content, policy)

    return guarded_reply(message, context, call_next, check)


def _secagg_only(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Run ``secaggplus_mod`` on SecAgg+ messages only; plain DP rounds pass straight on."""
    if SECAGG_RECORD in message.content.config_records:
        return secaggplus_mod(message, context, call_next)
    return call_next(message, context)


app = ClientApp(mods=[_guard, _secagg_only])


def _dp(config: Mapping[str, Any]) -> tuple[str, float, float]:
    mode = str(config.get("dp-mode", "off"))
    clip = float(config.get("dp-clip", 0.0)) if mode != "off" else 0.0  # 0: server clips
    noise = float(config.get("dp-noise-std", 0.0)) if mode == "client" else 0.0
    return mode, clip, noise


def _train(settings: NodeSettings, config: Mapping[str, Any],
           global_adapter: Mapping[str, np.ndarray]) -> tuple[Any, Any, str]:
    spec = RoundSpec.from_config(config)
    update = train_locally(settings, load_local_data(settings), spec, global_adapter)
    mode, clip, noise = _dp(config)
    shaped = shape_update(update.adapter, global_adapter, clip=clip, noise_std=noise)
    logger.info("round=%d mode=%s dp=%s examples=%d", spec.round, spec.mode, mode,
                update.num_examples)
    return update, shaped, mode


@app.train()
def train(message: Message, context: Context) -> Message:
    """Plain DP round (adapter in, privatised adapter out) or the SecAgg+ fit stage."""
    started = time.perf_counter()
    settings = NodeSettings.from_node_config(context.node_config)
    policy = client_app._policy(context)
    if FITINS_CONFIG in message.content.config_records:
        return _secagg_fit(message, settings, policy, started)
    config = message.content.config_records["config"]
    global_adapter = client_app._global_adapter(message)
    update, shaped, _ = _train(settings, config, global_adapter)
    metrics = {**update.metrics, "handler-seconds": time.perf_counter() - started}
    payload = ReplyPayload(adapter=apply_delta(global_adapter, shaped.delta),
                           num_examples=update.num_examples, metrics=metrics,
                           cells=update.cells,
                           versions={"parent-version": str(config["parent-version"])})
    return build_reply(message, payload, policy)


def _secagg_fit(message: Message, settings: NodeSettings, policy: Any,
                started: float) -> Message:
    from flwr.common import parameters_to_ndarrays
    from flwr.compat.common import recorddict_compat as compat

    fitins = compat.recorddict_to_fitins(message.content, keep_input=True)
    config = dict(fitins.config)
    names = str(config["adapter-keys"]).split(",")
    arrays = parameters_to_ndarrays(fitins.parameters)
    if len(names) != len(arrays):
        raise EgressError(f"adapter-keys names {len(names)} tensors, got {len(arrays)}")
    global_adapter = dict(zip(names, arrays, strict=True))
    update, shaped, mode = _train(settings, config, global_adapter)
    if update.num_examples < policy.k_min:
        # no contribution at all: the masked sum would still reveal a tiny node's update
        raise EgressError("fewer than k_min training examples")
    check_secagg_range(shaped.delta, float(config["secagg-clipping-range"]))
    weight = 1 if mode != "off" else update.num_examples
    metrics = {**update.metrics, "handler-seconds": time.perf_counter() - started}
    payload = ReplyPayload(num_examples=update.num_examples, metrics=metrics,
                           cells=update.cells)
    return build_secagg_fit_reply(message, shaped.delta, weight, payload, policy)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """The plain held-out evaluation (see :func:`tenant_node.flower.client_app.evaluate`)."""
    return client_app.evaluate(message, context)


@app.query("status")
def status(message: Message, context: Context) -> Message:
    """The plain status counts (see :func:`tenant_node.flower.client_app.status`)."""
    return client_app.status(message, context)
