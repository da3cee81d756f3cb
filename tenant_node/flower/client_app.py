"""The tenant node's Flower ClientApp: ``train``, ``evaluate``, ``query.status``,
``query.ab_stats``, ``query.trigger`` and ``train.deploy``.

Started by ``flower-supernode --node-config`` (:class:`hermes_fed.federation.NodeSettings`:
``tenant-id``, ``store``, ``base-model``, ...). The message contract is
:mod:`hermes_fed.federation.messages`. Every reply is built by
:mod:`tenant_node.flower.egress` (invariant 8), and the guard mod re-checks it; a handler's
exception leaves the node as a reason code and its type name only (E6,
:mod:`hermes_fed.federation.reasons`). The node's data is read from its own event store
on each message (the ClientApp process may be fresh every message) and never leaves it.

One app serves every kind of round. ``train`` carries a
:class:`~hermes_fed.federation.RoundSpec`: in plain rounds the node sends its adapter; in
DP rounds it sends ``global + Δ`` with ``Δ`` clipped and, for client DP, noised
(``UpdateShaping``); under SecAgg+ Flower's ``secaggplus_mod`` runs the protocol's four
stages and calls the handler at *collect masked vectors* with the legacy ``FitIns`` (the
global adapter as a list, its names in ``adapter-keys``); the node answers a ``FitRes`` of
``Δ`` and its weight (num-examples, or 1 under DP), which the mod masks (E7).

A ``train`` whose reply carries the node's update records ``FederatedRoundTrained`` in the
node's own log (:func:`~tenant_node.flower.local_round.record_round`): the node's trigger
then sees the round as its last training, and no trajectory is marked used.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable

from hermes_fed.errors import EgressError, FederationError
from hermes_fed.federation import messages as wire
from hermes_fed.federation.node_settings import NodeSettings
from hermes_fed.federation.round_spec import RoundSpec
from hermes_fed.privacy.updates import apply_delta, check_secagg_range, shape_update
from tenant_node.flower.egress import (
    SECAGG_RECORD,
    EgressPolicy,
    ReplyPayload,
    build_reply,
    build_secagg_fit_reply,
    check_content,
    check_secagg_content,
    guarded_reply,
)
from tenant_node.flower.local_round import (
    LocalData,
    LocalUpdate,
    evaluate_locally,
    load_local_data,
    record_round,
    train_locally,
)

logger = logging.getLogger(__name__)

FITINS_CONFIG = "fitins.config"


def node_policy(context: Context) -> EgressPolicy:
    """The egress policy of this node (its ``k-min``; read alone, so the guard stands even
    when the rest of the node config is bad and the handler fails on it)."""
    k_min = context.node_config.get("k-min")
    return EgressPolicy(k_min=int(k_min)) if k_min is not None else EgressPolicy()


def _guard(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """E6 for every message; E1-E5 for plain replies, E7 for SecAgg+ replies."""
    policy = node_policy(context)

    def check(content: RecordDict) -> None:
        if SECAGG_RECORD in content.config_records:
            check_secagg_content(content, policy)
        else:
            check_content(content, policy)

    return guarded_reply(message, context, call_next, check)


def _secagg_only(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Run ``secaggplus_mod`` on SecAgg+ messages only; other messages pass straight on."""
    if SECAGG_RECORD in message.content.config_records:
        return secaggplus_mod(message, context, call_next)
    return call_next(message, context)


app = ClientApp(mods=[_guard, _secagg_only])


def _versions(settings: NodeSettings, spec: RoundSpec, data: LocalData) -> dict[str, str]:
    versions = {wire.PARENT_VERSION: spec.parent_version, wire.TENANT_ID: settings.tenant_id}
    if data.manifest_sha256:
        versions[wire.DATASET_MANIFEST] = data.manifest_sha256
    return versions


def _train(settings: NodeSettings, spec: RoundSpec, global_adapter: Mapping[str, np.ndarray]
           ) -> tuple[LocalData, LocalUpdate]:
    data = load_local_data(settings)
    update = train_locally(settings, data, spec, global_adapter)
    logger.info("round=%d mode=%s dp=%s examples=%d", spec.round, spec.mode,
                spec.shaping.dp_mode, update.num_examples)
    return data, update


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train from the global adapter on this node's data (plain, DP, or SecAgg+'s fit)."""
    started = time.perf_counter()
    settings = NodeSettings.from_node_config(context.node_config)
    policy = EgressPolicy(k_min=settings.k_min)
    if FITINS_CONFIG in message.content.config_records:
        return _secagg_fit(message, settings, policy, started)
    spec = RoundSpec.from_record(message.content.config_records[wire.CONFIG])
    global_adapter = wire.record_tensors(message.content.array_records[wire.ADAPTER])
    data, update = _train(settings, spec, global_adapter)
    adapter = update.adapter
    if spec.shaping.dp_mode != "off":
        shaped = shape_update(update.adapter, global_adapter, clip=spec.shaping.dp_clip,
                              noise_std=spec.shaping.dp_noise_std)
        adapter = apply_delta(global_adapter, shaped.delta)
    metrics = {**update.metrics, wire.HANDLER_SECONDS: time.perf_counter() - started}
    payload = ReplyPayload(adapter=adapter, num_examples=update.num_examples, metrics=metrics,
                           counts=update.counts, cells=update.cells,
                           versions=_versions(settings, spec, data))
    reply = build_reply(message, payload, policy)
    _record(message, settings, policy, spec, data, update)
    return reply


def _record(message: Message, settings: NodeSettings, policy: EgressPolicy, spec: RoundSpec,
            data: LocalData, update: LocalUpdate) -> None:
    """Record the round in the node's log once its reply is built and carries the update
    (under ``k_min`` examples the update stays on the node: no training of the round).

    If the append fails the handler fails, and the round's reply is an error with a reason
    code (``store-unavailable`` for the database): a reply whose training the node's log
    does not show would leave its trigger counting every trajectory as new, so the
    autopilot would train again at once. Nothing accepted is lost: the trajectories stay in
    the log and the next round trains on them.
    """
    if update.num_examples >= policy.k_min:
        record_round(settings, spec, data, update, message.metadata.run_id)


def _secagg_fit(message: Message, settings: NodeSettings, policy: EgressPolicy,
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
    spec = RoundSpec.from_record(config)
    data, update = _train(settings, spec, global_adapter)
    if update.num_examples < policy.k_min:
        # no contribution at all: the masked sum would still reveal a tiny node's update
        raise EgressError("fewer than k_min training examples")
    shaped = shape_update(update.adapter, global_adapter, clip=spec.shaping.dp_clip,
                          noise_std=spec.shaping.dp_noise_std)
    check_secagg_range(shaped.delta, spec.shaping.secagg_clipping_range)
    weight = 1 if spec.shaping.dp_mode != "off" else update.num_examples
    metrics = {**update.metrics, wire.HANDLER_SECONDS: time.perf_counter() - started}
    payload = ReplyPayload(num_examples=update.num_examples, metrics=metrics,
                           counts=update.counts, cells=update.cells)
    reply = build_secagg_fit_reply(message, shaped.delta, weight, payload, policy)
    _record(message, settings, policy, spec, data, update)
    return reply


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Held-out log-likelihood of the adapter in the message (and of the base model)."""
    settings = NodeSettings.from_node_config(context.node_config)
    spec = RoundSpec.from_record(message.content.config_records[wire.CONFIG])
    data = load_local_data(settings)
    adapter = wire.record_tensors(message.content.array_records[wire.ADAPTER])
    cells = evaluate_locally(settings, data, spec, adapter)
    payload = ReplyPayload(cells=cells, versions={wire.ADAPTER_VERSION: spec.parent_version,
                                                  wire.TENANT_ID: settings.tenant_id})
    return build_reply(message, payload, EgressPolicy(k_min=settings.k_min))


@app.query("status")
def status(message: Message, context: Context) -> Message:
    """Counts of the node's log (no ids, no text); small counts are suppressed."""
    settings = NodeSettings.from_node_config(context.node_config)
    data = load_local_data(settings)
    payload = ReplyPayload(counts={wire.COUNT_EVENTS: data.num_events,
                                   wire.COUNT_TRAIN: len(data.train),
                                   wire.COUNT_HELDOUT: len(data.heldout)},
                           versions={wire.TENANT_ID: settings.tenant_id})
    return build_reply(message, payload, EgressPolicy(k_min=settings.k_min))


@app.query("ab_stats")
def ab_stats(message: Message, context: Context) -> Message:
    """Per-arm sufficient statistics of an A/B test (see :mod:`tenant_node.flower.ab_stats`)."""
    from tenant_node.flower.ab_stats import answer

    settings = NodeSettings.from_node_config(context.node_config)
    policy = EgressPolicy(k_min=settings.k_min)
    payload = answer(message.content, settings)
    payload = dataclasses.replace(payload, versions={**payload.versions,
                                                     wire.TENANT_ID: settings.tenant_id})
    return build_reply(message, payload, policy)


@app.query("trigger")
def trigger(message: Message, context: Context) -> Message:
    """Should this node train now? (see :mod:`tenant_node.flower.readiness`)"""
    from hermes_fed.federation.delivery import TriggerQuery
    from tenant_node.flower.readiness import answer

    settings = NodeSettings.from_node_config(context.node_config)
    query = TriggerQuery.from_record(message.content.config_records[wire.CONFIG])
    return build_reply(message, answer(settings, query), EgressPolicy(k_min=settings.k_min))


@app.train("deploy")
def deploy(message: Message, context: Context) -> Message:
    """Install the delivered adapters and apply the plan (see :mod:`tenant_node.flower.deploy`)."""
    from hermes_fed.federation.delivery import DeploySpec, adapter_key
    from tenant_node.flower.deploy import apply

    settings = NodeSettings.from_node_config(context.node_config)
    content = message.content
    if wire.CONFIG not in content.config_records:
        raise FederationError("deploy: no config record")
    spec = DeploySpec.from_record(content.config_records[wire.CONFIG])
    tensors = []
    for index in range(len(spec.adapters)):
        key = adapter_key(index)
        if key not in content.array_records:
            raise FederationError(f"deploy: no tensors under {key}")
        tensors.append(wire.record_tensors(content.array_records[key]))
    return build_reply(message, apply(settings, spec, tensors), EgressPolicy(k_min=settings.k_min))
