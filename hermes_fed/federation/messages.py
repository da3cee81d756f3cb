"""The names both sides of the federation use: message types, records, reply keys.

Coordinator -> node (message type: content):

* ``train``: ``adapter`` (ArrayRecord, the global adapter) + ``config``
  (:class:`~hermes_fed.federation.round_spec.RoundSpec`). Reply: ``adapter`` (B only in
  frozen-a), metrics ``num-examples``, ``train-loss``, ``train-seconds``,
  ``handler-seconds``, counts ``count.selected`` (trajectories selected) and
  ``count.truncated`` (examples cut at ``max-length``), the held-out cell
  ``heldout-before.*`` of the incoming adapter, versions ``parent-version`` and
  ``dataset-manifest``.
* ``evaluate``: ``adapter`` + ``config``. Reply: cells ``heldout.base`` and
  ``heldout.adapter``, version ``adapter-version``.
* ``query.status``: nothing in. Reply: counts ``count.events``, ``count.train``,
  ``count.heldout``.
* ``query.ab_stats``: ``config`` (:class:`~hermes_fed.federation.queries.AbQuery`) and, for
  an offline look, ``candidate`` / ``current`` adapters. Reply: cells ``ab.*``.
* ``query.trigger`` and ``train.deploy``: the autopilot's readiness question and adapter + plan
  delivery (:mod:`hermes_fed.federation.delivery`).

Every reply's ``versions`` names the node's tenant (``tenant-id``), so the coordinator's
reports, lineage and A/B looks name tenants, not Flower's numeric node ids.

Every reply holds only ``adapter``, ``metrics`` and ``versions`` (the node's egress guard
enforces it); a failed handler's reply carries a reason code (:mod:`.reasons`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, Message

# --- message types -----------------------------------------------------------------------
TRAIN = "train"
EVALUATE = "evaluate"
QUERY_STATUS = "query.status"
QUERY_AB_STATS = "query.ab_stats"
QUERY_TRIGGER = "query.trigger"  # payloads and reply keys: .delivery
# Flower accepts only "<train|evaluate|query>[.<action>]": a bare "deploy" is refused when
# the Message is built. Deploy changes the node's state, so it is no query.
DEPLOY = "train.deploy"  # payloads and reply keys: .delivery

# --- records -----------------------------------------------------------------------------
ADAPTER = "adapter"
CONFIG = "config"
METRICS = "metrics"
VERSIONS = "versions"
CANDIDATE = "candidate"
CURRENT = "current"
REPLY_RECORDS = frozenset({ADAPTER, METRICS, VERSIONS})

# --- reply metrics -----------------------------------------------------------------------
NUM_EXAMPLES = "num-examples"
SUPPRESSED_CELLS = "suppressed-cells"
TRAIN_LOSS = "train-loss"
TRAIN_LOSS_LAST = "train-loss-last"
TRAIN_SECONDS = "train-seconds"
TRAIN_TOKENS = "train-tokens"
TRUNCATED_EXAMPLES = "count.truncated"
COUNT_SELECTED = "count.selected"
HANDLER_SECONDS = "handler-seconds"
COUNT_EVENTS = "count.events"
COUNT_TRAIN = "count.train"
COUNT_HELDOUT = "count.heldout"

# --- cells (n, sum, sum of squares; k_min applies) ----------------------------------------
HELDOUT = "heldout"
HELDOUT_BEFORE = "heldout-before"
BASE = "base"
ADAPTED = "adapter"

# --- versions ----------------------------------------------------------------------------
PARENT_VERSION = "parent-version"
DATASET_MANIFEST = "dataset-manifest"
ADAPTER_VERSION = "adapter-version"
TENANT_ID = "tenant-id"

VERSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]*")
"""What a ``versions`` value may be (egress E4): a token without spaces, ``@`` or text."""
MAX_VERSION_ID = 128


def cell_name(prefix: str, part: str) -> str:
    """``cell_name("heldout", "adapter")`` -> ``"heldout.adapter"``."""
    return f"{prefix}.{part}"


def adapter_record(tensors: Mapping[str, np.ndarray]) -> ArrayRecord:
    """Adapter tensors as an ArrayRecord, sorted by name (contiguous copies)."""
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in sorted(tensors.items())})


def record_tensors(record: ArrayRecord) -> dict[str, np.ndarray]:
    """An ArrayRecord's tensors by name."""
    return {name: array.numpy() for name, array in record.items()}


def reply_metrics(reply: Message | None) -> dict[str, float] | None:
    """A good reply's numeric metrics; None for no reply, an error reply, or no metrics."""
    if reply is None or reply.has_error() or METRICS not in reply.content:
        return None
    return {k: float(v) for k, v in reply.content.metric_records[METRICS].items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def reply_metric(reply: Message | None, name: str) -> float | None:
    metrics = reply_metrics(reply)
    return None if metrics is None else metrics.get(name)


def reply_version(reply: Message | None, key: str) -> str | None:
    if reply is None or reply.has_error() or VERSIONS not in reply.content:
        return None
    value = reply.content.config_records[VERSIONS].get(key)
    return value if isinstance(value, str) else None


def cell_mean(metrics: Mapping[str, float] | None, cell: str) -> float | None:
    """Mean of a cell (``<cell>.sum / <cell>.n``) in reply metrics; None when absent."""
    if not metrics:
        return None
    n, total = metrics.get(f"{cell}.n"), metrics.get(f"{cell}.sum")
    return total / n if n and total is not None else None
