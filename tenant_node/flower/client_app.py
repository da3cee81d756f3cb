"""The tenant node's Flower ClientApp: ``train``, ``evaluate``, ``query.status``, ``query.ab_stats``.

Started by ``flower-supernode --node-config 'tenant-id="a" store="sqlite:///..."
base-model="..."'``. Every reply is built by :mod:`tenant_node.flower.egress` (invariant 8); the
egress mod re-checks it and reduces any exception to its type name. The node's data is
read from its own event store on each message (the ClientApp process may be fresh every
message) and never leaves the node.

Message contract (coordinator -> node):

* ``train``: ``adapter`` (ArrayRecord, the global adapter) + ``config`` (ConfigRecord,
  see :class:`tenant_node.flower.local_round.RoundSpec`). Reply: the trained adapter (B only in
  frozen-a), ``num-examples``, ``train-loss``, held-out log-likelihood of the incoming
  adapter, ``versions.parent-version``.
* ``evaluate``: ``adapter`` + ``config``. Reply: held-out counts and log-likelihoods.
* ``query.status``: nothing in. Reply: event and trajectory counts (k_min applies).
* ``query.ab_stats``: ``config`` (an A/B test's facts and a mode; ``candidate``/``current``
  adapters when offline, see :mod:`tenant_node.flower.ab_stats`). Reply: per-arm cells only.

Further query handlers register on :data:`app` with ``@app.query("<name>")`` and build
replies with :func:`tenant_node.flower.egress.build_reply`.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from tenant_node.flower.egress import EgressPolicy, ReplyPayload, build_reply, egress_mod
from tenant_node.flower.local_round import (
    NodeSettings,
    RoundSpec,
    evaluate_locally,
    load_local_data,
    train_locally,
)

logger = logging.getLogger(__name__)

_DEFAULT_POLICY = EgressPolicy()


def _policy(context: Context) -> EgressPolicy:
    k_min = context.node_config.get("k-min")
    return EgressPolicy(k_min=int(k_min)) if k_min is not None else _DEFAULT_POLICY


def _guard(message: Message, context: Context, call_next):  # type: ignore[no-untyped-def]
    mod = egress_mod(_policy(context))
    return mod(message, context, call_next)


app = ClientApp(mods=[_guard])


def _global_adapter(message: Message) -> dict[str, np.ndarray]:
    record = message.content.array_records["adapter"]
    return {name: array.numpy() for name, array in record.items()}


def _versions(parent: str, manifest_sha256: str) -> dict[str, str]:
    """Version ids of a train reply: the adapter it started from and the dataset manifest."""
    versions = {"parent-version": parent}
    if manifest_sha256:
        versions["dataset-manifest"] = manifest_sha256
    return versions


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train from the global adapter on this node's data; reply through the egress guard."""
    started = time.perf_counter()
    settings = NodeSettings.from_node_config(context.node_config)
    spec = RoundSpec.from_config(message.content.config_records["config"])
    data = load_local_data(settings)
    update = train_locally(settings, data, spec, _global_adapter(message))
    logger.info("round=%d mode=%s examples=%d", spec.round, spec.mode, update.num_examples)
    metrics = {**update.metrics, "handler-seconds": time.perf_counter() - started}
    payload = ReplyPayload(adapter=update.adapter, num_examples=update.num_examples,
                           metrics=metrics, cells=update.cells,
                           versions=_versions(spec.parent_version, data.manifest_sha256))
    return build_reply(message, payload, _policy(context))


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Held-out log-likelihood of the adapter in the message (and of the base model)."""
    settings = NodeSettings.from_node_config(context.node_config)
    spec = RoundSpec.from_config(message.content.config_records["config"])
    data = load_local_data(settings)
    cells = evaluate_locally(settings, data, spec, _global_adapter(message))
    payload = ReplyPayload(cells=cells, versions={"adapter-version": spec.parent_version})
    return build_reply(message, payload, _policy(context))


@app.query("status")
def status(message: Message, context: Context) -> Message:
    """Counts of the node's log (no ids, no text); small counts are suppressed."""
    settings = NodeSettings.from_node_config(context.node_config)
    data = load_local_data(settings)
    payload = ReplyPayload(counts={"count.events": data.num_events,
                                   "count.train": len(data.train),
                                   "count.heldout": len(data.heldout)})
    return build_reply(message, payload, _policy(context))


@app.query("ab_stats")
def ab_stats(message: Message, context: Context) -> Message:
    """Per-arm sufficient statistics of an A/B test (see :mod:`tenant_node.flower.ab_stats`)."""
    from tenant_node.flower.ab_stats import answer

    policy = _policy(context)
    return build_reply(message, answer(message.content, context.node_config, policy), policy)
