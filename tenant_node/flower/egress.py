"""The node's egress guard: the only code on a node that builds replies (invariant 8).

Everything a tenant node sends to the coordinator is a Flower ``Message`` whose content
is built here from a typed :class:`ReplyPayload`. What may leave is an allow-list:

* ``adapter`` (``ArrayRecord``): LoRA adapter tensors, floating point, finite, named by
  their module path (``...q_proj.lora_B.weight``) -- names come from the model, not data;
* ``metrics`` (``MetricRecord``): counts, sums, sums of squares and metric values, each a
  single finite number under a lower-case dotted name (no lists: a list of integers can
  spell text);
* ``versions`` (``ConfigRecord``): version ids, short tokens without spaces or ``@``.

Nothing else: no text, no trajectory ids, no user refs. Counts and sufficient-statistics
cells with ``0 < n < k_min`` are suppressed (k-anonymity style small-cell suppression,
as in statistical disclosure control); a training reply on fewer than ``k_min`` examples
carries no adapter at all. :func:`egress_mod` is installed on the ``ClientApp`` and
re-checks every outgoing message, and turns any exception into a message that names only
the exception type, because Flower copies ``str(exception)`` into the error reply.

Invariants (tests cite them):

E1. A reply holds only the records ``adapter``, ``metrics``, ``versions``.
E2. Every ``ArrayRecord`` entry is a finite floating-point tensor under an adapter name.
E3. Every metric is one finite ``int``/``float`` under a metric name.
E4. Every version is a version id (``[A-Za-z0-9][A-Za-z0-9._:+-]*``, <= 128 chars).
E5. No count ``n`` (``*.n``, ``num-examples``) with ``0 < n < k_min`` leaves the node.
E6. An exception in a handler leaves the node as a reason code, the node's tenant id (a
    version id, as in its replies) and the exception's type name only
    (``hermes_fed.federation.reasons``): never the exception's text.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable, Mod

from hermes_fed.errors import ConfigError, EgressError
from hermes_fed.federation import messages as wire
from hermes_fed.federation.cells import Cell
from hermes_fed.federation.reasons import error_text

logger = logging.getLogger(__name__)

ADAPTER_RECORD = wire.ADAPTER
METRICS_RECORD = wire.METRICS
VERSIONS_RECORD = wire.VERSIONS
ALLOWED_RECORDS = wire.REPLY_RECORDS

NUM_EXAMPLES = wire.NUM_EXAMPLES
SUPPRESSED_CELLS = wire.SUPPRESSED_CELLS

_TENSOR_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
_METRIC_NAME = re.compile(r"[a-z][a-z0-9_]*([.-][a-z0-9_]+)*")
_VERSION_ID = wire.VERSION_ID
_MAX_NAME = 200
_MAX_VERSION = wire.MAX_VERSION_ID


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """What the node lets out."""

    k_min: int = field(
        default=20,
        metadata={"help": "smallest count that may leave the node; 0 < n < k_min is suppressed"},
    )
    adapter_marker: str = field(
        default="lora_",
        metadata={"help": "every adapter tensor name must contain this (peft's LoRA names)"},
    )

    def __post_init__(self) -> None:
        if self.k_min < 1:
            raise ConfigError(f"EgressPolicy.k_min must be >= 1, got {self.k_min!r}")
        if not self.adapter_marker:
            raise ConfigError(
                f"EgressPolicy.adapter_marker must be non-empty, got {self.adapter_marker!r}"
            )


@dataclass(frozen=True, slots=True)
class ReplyPayload:
    """Everything a node may say in one reply; :func:`build_reply` turns it into a Message."""

    adapter: Mapping[str, np.ndarray] | None = None
    num_examples: int | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    cells: Sequence[Cell] = ()
    versions: Mapping[str, str] = field(default_factory=dict)


def _check_metric_name(name: str) -> None:
    if len(name) > _MAX_NAME or not _METRIC_NAME.fullmatch(name):
        raise EgressError(f"metric name is not an allowed metric name (length {len(name)})")


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EgressError(f"metric {name} must be one int or float, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise EgressError(f"metric {name} is not finite")


def _check_tensor(name: str, array: np.ndarray, policy: EgressPolicy) -> None:
    if (
        len(name) > _MAX_NAME
        or not _TENSOR_NAME.fullmatch(name)
        or policy.adapter_marker not in name
    ):
        raise EgressError(f"tensor name is not an adapter tensor name (length {len(name)})")
    if array.dtype.kind != "f":
        raise EgressError(f"adapter tensor {name} has dtype {array.dtype}, not floating point")
    if not np.isfinite(array).all():
        raise EgressError(f"adapter tensor {name} holds NaN or inf")


def _check_version(key: str, value: object) -> None:
    _check_metric_name(key)
    if (
        not isinstance(value, str)
        or len(value) > _MAX_VERSION
        or not _VERSION_ID.fullmatch(value)
    ):
        raise EgressError(f"version {key} is not a version id")


def _is_count(name: str) -> bool:
    return name == NUM_EXAMPLES or name.endswith(".n") or name.startswith("count.")


def build_reply(request: Message, payload: ReplyPayload, policy: EgressPolicy) -> Message:
    """Build the reply to ``request`` from ``payload``, applying the allow-list and k_min.

    Raises
    ------
    EgressError
        When anything in ``payload`` is outside the allow-list (E1-E4). Small cells are
        not an error: they are dropped and counted under ``suppressed-cells`` (E5).
    """
    metrics: dict[str, int | float | list[int] | list[float]] = {}
    suppressed = 0
    adapter = payload.adapter
    training_suppressed = False
    if payload.num_examples is not None:
        if 0 < payload.num_examples < policy.k_min:
            # an update (or a loss) from so few examples says too much about each one
            suppressed += 1
            adapter, training_suppressed = None, True
        else:
            metrics[NUM_EXAMPLES] = int(payload.num_examples)
    for name, count in payload.counts.items():
        key = name if _is_count(name) else f"count.{name}"
        _check_metric_name(key)
        _check_number(key, count)
        if 0 < count < policy.k_min:
            suppressed += 1
        else:
            metrics[key] = int(count)
    for cell in payload.cells:
        _check_metric_name(cell.name)
        if 0 < cell.n < policy.k_min:
            suppressed += 1  # its covariate sums are dropped with it
            continue
        for key, value in cell.metrics().items():
            _check_number(key, value)
            metrics[key] = int(value) if key.endswith(".n") else value
    for name, value in payload.metrics.items():
        _check_metric_name(name)
        if _is_count(name):
            raise EgressError(f"metric {name} is a count; pass it in counts= so k_min applies")
        _check_number(name, value)
        if not training_suppressed:
            metrics[name] = float(value)
    metrics[SUPPRESSED_CELLS] = suppressed

    content = RecordDict()
    if adapter is not None:
        arrays: dict[str, Array] = {}
        for name, tensor in adapter.items():
            array = np.ascontiguousarray(tensor)
            _check_tensor(name, array, policy)
            arrays[name] = Array(array)
        content[ADAPTER_RECORD] = ArrayRecord(arrays)
    content[METRICS_RECORD] = MetricRecord(metrics)
    if payload.versions:
        for key, version in payload.versions.items():
            _check_version(key, version)
        content[VERSIONS_RECORD] = ConfigRecord(dict(payload.versions))
    check_content(content, policy)
    return Message(content, reply_to=request)


def check_content(content: RecordDict, policy: EgressPolicy) -> None:
    """Check a reply's content against invariants E1-E5; raise :class:`EgressError` if not."""
    for key, record in content.items():
        if key not in ALLOWED_RECORDS:
            raise EgressError(f"reply record {key!r} is not allowed to leave the node")
        if key == ADAPTER_RECORD:
            if not isinstance(record, ArrayRecord):
                raise EgressError(f"reply record {key} must be an ArrayRecord")
            for name, array in record.items():
                _check_tensor(name, array.numpy(), policy)
        elif key == METRICS_RECORD:
            if not isinstance(record, MetricRecord):
                raise EgressError(f"reply record {key} must be a MetricRecord")
            _check_reply_metrics(record.items(), policy)
        else:
            if not isinstance(record, ConfigRecord):
                raise EgressError(f"reply record {key} must be a ConfigRecord")
            for name, config_value in record.items():
                _check_version(name, config_value)


def _check_reply_metrics(items: Iterable[tuple[str, Any]], policy: EgressPolicy) -> None:
    """Metric names and values of a reply; a count below ``k_min`` (but not 0) is refused."""
    for name, metric in items:
        _check_metric_name(name)
        _check_number(name, metric)
        if _is_count(name) and 0 < int(metric) < policy.k_min:
            raise EgressError(f"count {name} is below k_min={policy.k_min}")


def guarded_reply(
    message: Message,
    context: Context,
    call_next: ClientAppCallable,
    check: Callable[[RecordDict], None],
) -> Message:
    """Run the handler; E6 for its failure (reason code and type name only, the full exception logged on
    the node), then ``check`` on the reply's content (refusal logged, a generic error out)."""
    kind = message.metadata.message_type
    tenant = context.node_config.get(wire.TENANT_ID)  # error_text names it only if a version id
    try:
        reply = call_next(message, context)
    except Exception as exc:
        logger.exception("handler failed message_type=%s", kind)
        raise EgressError(error_text(kind, exc, tenant)) from None
    if reply.has_error():
        raise EgressError(f"{kind} failed: reason=internal (error reply)")
    try:
        check(reply.content)
    except EgressError as exc:
        logger.error("reply refused message_type=%s reason=%s", kind, exc)
        raise EgressError(error_text(kind, exc, tenant)) from None
    return reply


def egress_mod(policy: EgressPolicy) -> Mod:
    """A Flower client mod that re-checks every outgoing message (E1-E6).

    Installed as ``ClientApp(mods=[egress_mod(policy)])``. Errors raised by a handler
    leave as ``"<handler> failed: reason=<code> (<ExceptionType>)"`` only (E6); the full exception is
    logged on the node.
    """

    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        return guarded_reply(message, context, call_next, lambda content: check_content(content, policy))

    return mod


# --- SecAgg+ replies (privacy rounds, tenant_node.flower.private_client_app) ----------------------
#
# Under SecAgg+ Flower's ``secaggplus_mod`` turns the node's legacy ``FitRes`` into masked
# integer vectors. What may leave in that protocol (E7):
#
# E7. A SecAgg+ reply holds only ``secaggplus_configs`` (protocol keys; bytes, ints and lists of
#     them: public keys, encrypted shares, masked vectors, node ids), ``fitres.metrics``
#     (checked as E3/E5), ``fitres.num_examples`` (the weight: 1 under DP, else a count
#     >= k_min), ``fitres.status`` (code, empty message) and an *empty*
#     ``fitres.parameters`` (a non-empty one would be a plaintext update).

SECAGG_RECORD = "secaggplus_configs"  # flwr secaggplus_constants.RECORD_KEY_CONFIGS
_FITRES = "fitres"
_SECAGG_KEYS = frozenset({
    "pk1", "pk2", "dsts", "ctxts", "masked_params", "nids", "shares"})


def build_secagg_fit_reply(request: Message, delta: Mapping[str, np.ndarray], weight: int,
                           payload: ReplyPayload, policy: EgressPolicy) -> Message:
    """The legacy ``FitRes`` reply that ``secaggplus_mod`` masks before it leaves.

    ``delta`` (sorted by name) becomes the parameters; ``weight`` the SecAgg+ weight;
    ``payload`` carries counts/metrics/cells, checked exactly as :func:`build_reply` does.
    """
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
    from flwr.compat.common import recorddict_compat as compat

    checked = build_reply(request, payload, policy).content
    if ADAPTER_RECORD in checked:  # never: payload carries no adapter here
        raise EgressError("a SecAgg+ reply must not carry a plaintext adapter")
    if weight != 1 and weight < policy.k_min:
        raise EgressError(f"SecAgg+ weight must be 1 (DP) or >= k_min={policy.k_min}")
    arrays = []
    for name, tensor in sorted(delta.items()):
        array = np.ascontiguousarray(tensor)
        _check_tensor(name, array, policy)
        arrays.append(array)
    metrics = dict(checked.metric_records[METRICS_RECORD])
    fitres = FitRes(status=Status(code=Code.OK, message=""),
                    parameters=ndarrays_to_parameters(arrays), num_examples=int(weight),
                    metrics=metrics)  # type: ignore[arg-type]
    return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=request)


def _is_protocol_value(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, bytes | int):
        return True
    return isinstance(value, list) and all(
        isinstance(v, bytes | int) and not isinstance(v, bool) for v in value)


def check_secagg_content(content: RecordDict, policy: EgressPolicy) -> None:
    """Check a SecAgg+ reply against E7; raise :class:`EgressError` if not."""
    for key, record in content.items():
        if key == SECAGG_RECORD:
            if not isinstance(record, ConfigRecord):
                raise EgressError(f"reply record {key} must be a ConfigRecord")
            for name, value in record.items():
                if name not in _SECAGG_KEYS or not _is_protocol_value(value):
                    raise EgressError(f"SecAgg+ reply key {name!r} is not a protocol value")
        elif key == f"{_FITRES}.metrics":
            if not isinstance(record, ConfigRecord):
                raise EgressError(f"reply record {key} must be a ConfigRecord")
            _check_reply_metrics(record.items(), policy)
        elif key == f"{_FITRES}.num_examples":
            if not isinstance(record, MetricRecord) or set(record) != {"num_examples"}:
                raise EgressError(f"reply record {key} must hold num_examples only")
            weight = record["num_examples"]
            if not isinstance(weight, int) or (weight != 1 and weight < policy.k_min):
                raise EgressError(f"SecAgg+ weight must be 1 (DP) or >= k_min={policy.k_min}")
        elif key == f"{_FITRES}.status":
            if not isinstance(record, ConfigRecord) or record.get("message", "") != "":
                raise EgressError(f"reply record {key} must carry no message text")
        elif key == f"{_FITRES}.parameters":
            if not isinstance(record, ArrayRecord) or len(record) != 0:
                raise EgressError("a SecAgg+ reply must not carry plaintext parameters")
        else:
            raise EgressError(f"reply record {key!r} is not allowed to leave the node")
