"""Privacy rounds without processes (issue 8): settings, accountant from the log, DP
shaping, the SecAgg+ egress rule E7, and Flower's real SecAgg+ protocol run in-process
between :func:`coordinator.rounds.secagg.secagg_exchange` and the node's guarded mods.

The in-process grid hands each message to a ClientApp built from the node's own mods
(:mod:`tenant_node.flower.client_app`) with a stand-in train handler that answers fixed
updates, so the sum, the quantisation bound, dropouts and halts are checked in
milliseconds; the deployment tests do the same over real processes.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.supercore.task_identity import TaskIdentity
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.logs.privacy_ledger import PrivacyLedger, accountant_from_log
from coordinator.rounds.config import RoundsConfig
from coordinator.rounds.dp import PrivacySettings, noise_the_mean
from coordinator.rounds.secagg import secagg_exchange
from hermes_fed.aggregation.records import ClientUpdate
from hermes_fed.errors import ConfigError, EgressError, FederationError, PrivacyBudgetExhausted
from hermes_fed.privacy.dp import RdpAccountant
from hermes_fed.privacy.updates import check_secagg_range, clip_to_reference, shape_update
from tenant_node.flower import client_app as secagg_client
from tenant_node.flower.egress import (
    SECAGG_RECORD,
    EgressPolicy,
    ReplyPayload,
    build_secagg_fit_reply,
    check_secagg_content,
)

B1, B2, A1 = "m.q_proj.lora_B.weight", "m.v_proj.lora_B.weight", "m.q_proj.lora_A.weight"


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1


# --- settings --------------------------------------------------------------------------
@pytest.mark.parametrize(("values", "needle"), [
    ({"dp": "sometimes"}, "'sometimes'"),
    ({"dp": "server", "dp_noise_multiplier": 0.0}, "0.0"),
    ({"dp_epsilon_budget": -1.0}, "-1.0"),
    ({"secagg": 1, "secagg_shares": 3, "secagg_threshold": 3}, "3"),
    ({"secagg": 2}, "2"),
])
def test_bad_privacy_settings_are_refused_naming_the_value(values: dict[str, Any],
                                                           needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        PrivacySettings(**values)


@pytest.mark.parametrize(("values", "mode", "min_nodes", "needle"), [
    ({"secagg": 1}, "exact", 3, "needs aggregation mode frozen-a"),
    ({"secagg": 1}, "fedavg", 3, "needs aggregation mode frozen-a"),
    ({"secagg": 1}, "frozen-a", 2, ">= 3 nodes"),
    ({"dp": "server"}, "exact", 3, "linear aggregate"),
])
def test_round_setups_that_cannot_keep_their_promise_are_refused(
    values: dict[str, Any], mode: str, min_nodes: int, needle: str,
) -> None:
    with pytest.raises(ConfigError, match=needle):
        PrivacySettings(**values).check_round_setup(mode, min_nodes)


def test_settings_come_from_the_run_config_with_dashes() -> None:
    s = PrivacySettings.from_run_config({"dp": "client", "dp-clip": 0.5,
                                         "dp-noise-multiplier": 2, "secagg": 1}, env={})
    assert (s.dp, s.dp_clip, s.dp_noise_multiplier, s.secagg) == ("client", 0.5, 2.0, 1)
    assert s.node_noise_std(4) == pytest.approx(2.0 * 0.5 / 2)  # SecAgg+: a share of z*C
    alone = PrivacySettings(dp="client", dp_clip=0.5, dp_noise_multiplier=2.0)
    assert alone.node_noise_std(4) == pytest.approx(2.0 * 0.5)  # seen alone: all of z*C


@pytest.mark.parametrize(("dp", "secagg", "node_clip"), [
    ("server", 0, 0.0), ("client", 0, 0.5), ("server", 1, 0.5), ("off", 1, 0.0)])
def test_nodes_clip_only_where_the_coordinator_cannot(dp: str, secagg: int,
                                                      node_clip: float) -> None:
    from coordinator.rounds.strategy import make_strategy

    s = PrivacySettings(dp=dp, dp_clip=0.5, secagg=bool(secagg))
    cfg = RoundsConfig(coordinator_dir="/c", base_model="/m", mode="frozen-a", min_nodes=3)
    assert make_strategy(cfg, s).shaping(cfg).dp_clip == node_clip


# --- accountant folded from the log (P1) and the budget (P2) --------------------------
def _completed(round_number: int, privacy: dict[str, Any]) -> Any:
    from hermes_fed.events import new_event
    from hermes_fed.events.coordinator import RoundCompleted

    record = RoundCompleted(round_id=f"r-{round_number}", round=round_number,
                            version=None, report={"privacy": privacy})
    return new_event(record, stream_id=f"r-{round_number}")


def test_p1_the_accountant_is_the_fold_of_the_logged_dp_rounds() -> None:
    # Prepare: two DP rounds at different z and one round without DP
    from hermes_fed.store import open_store

    store = open_store("memory://", "coordinator")  # a log, nothing more
    store.append([_completed(1, {"dp": "server", "noise_multiplier": 1.0}),
                  _completed(2, {"dp": "off"}),
                  _completed(3, {"dp": "client", "noise_multiplier": 2.0})])
    expected = RdpAccountant()
    expected.step(1.0)
    expected.step(2.0)

    # Execute
    rebuilt = accountant_from_log(store)
    store.close()

    # Assert
    assert rebuilt.rounds == 2
    assert rebuilt.epsilon(1e-5) == pytest.approx(expected.epsilon(1e-5))


def test_p2_a_round_past_the_budget_is_refused_before_anything_is_charged() -> None:
    # Prepare: a budget between one and two rounds' epsilon
    one = RdpAccountant().epsilon_after(1.0, 1.0, 1e-5)
    two = RdpAccountant().epsilon_after(1.0, 1.0, 1e-5, rounds=2)
    s = PrivacySettings(dp="server", dp_noise_multiplier=1.0, dp_epsilon_budget=(one + two) / 2)
    ledger = PrivacyLedger(s, RdpAccountant())

    # Execute / Assert
    ledger.refuse_if_exhausted(1)
    spent = ledger.charge()
    assert spent["epsilon_round"] == pytest.approx(one)
    assert spent["epsilon_total"] == pytest.approx(one)
    with pytest.raises(PrivacyBudgetExhausted, match="privacy budget exhausted: round 2"):
        ledger.refuse_if_exhausted(2)
    assert ledger.accountant.rounds == 1


# --- DP shaping ------------------------------------------------------------------------
finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(finite, min_size=1, max_size=12),
       clip=st.floats(1e-4, 5.0, allow_nan=False))
def test_a_shaped_update_never_exceeds_the_clip(values: list[float], clip: float) -> None:
    local = {B1: np.array(values, dtype=np.float32)}
    glob = {B1: np.zeros(len(values), dtype=np.float32)}
    shaped = shape_update(local, glob, clip=clip)
    assert shaped.clipped_norm <= clip * (1 + 1e-9)
    assert shaped.norm == pytest.approx(float(np.linalg.norm(np.array(values, dtype=np.float32))))
    if shaped.norm <= clip:
        np.testing.assert_allclose(shaped.delta[B1], np.asarray(values, dtype=np.float32))


def test_server_dp_clips_each_update_and_noises_the_mean_with_z_c_over_m() -> None:
    # Prepare: 4 nodes, updates of norm 3, C = 1, z = 2
    parent = {B1: np.zeros(50_000, dtype=np.float32)}
    updates = [ClientUpdate(str(i), 30, {B1: np.full(50_000, 3 / math.sqrt(50_000),
                                                     dtype=np.float32)}) for i in range(4)]
    s = PrivacySettings(dp="server", dp_clip=1.0, dp_noise_multiplier=2.0)

    # Execute: what the server-side DP strategy does to each update, then to the mean
    seen = [clip_to_reference(u.tensors, parent, s.dp_clip) for u in updates]
    mean = {B1: np.mean([tensors[B1] for tensors, _, _ in seen], axis=0)}
    noised = noise_the_mean(mean, [B1], 4, s, np.random.default_rng(0))

    # Assert
    assert all(norm == pytest.approx(3.0, rel=1e-5) for _, norm, _ in seen)
    assert all(clipped == pytest.approx(1.0, rel=1e-5) for _, _, clipped in seen)
    assert float(np.std(noised[B1] - mean[B1])) == pytest.approx(2.0 * 1.0 / 4, rel=0.02)


def test_an_update_beyond_the_secagg_range_is_refused_not_clipped() -> None:
    with pytest.raises(FederationError, match="beyond the SecAgg\\+ clipping range 1"):
        check_secagg_range({B1: np.array([0.5, -1.5])}, 1.0)
    assert check_secagg_range({B1: np.array([0.5, -0.75])}, 1.0) == 0.75


# --- E7 --------------------------------------------------------------------------------
def _request() -> Message:
    msg = Message(RecordDict(), dst_node_id=7, message_type="train")
    msg.metadata.__dict__["_message_id"] = "m-1"
    return msg


def test_e7_a_built_secagg_fit_reply_passes_and_tampering_is_caught() -> None:
    policy = EgressPolicy()
    reply = build_secagg_fit_reply(_request(), {B1: np.ones((2, 2))}, 40,
                                   ReplyPayload(num_examples=40, metrics={"train-loss": 1.0}),
                                   policy)
    reply.content.array_records["fitres.parameters"].clear()  # what secaggplus_mod does
    check_secagg_content(reply.content, policy)

    leaked = build_secagg_fit_reply(_request(), {B1: np.ones((2, 2))}, 40,
                                    ReplyPayload(num_examples=40), policy)
    with pytest.raises(EgressError, match="plaintext parameters"):
        check_secagg_content(leaked.content, policy)
    for bad in ({SECAGG_RECORD: ConfigRecord({"note": b"x"})},
                {SECAGG_RECORD: ConfigRecord({"pk1": "text"})},
                {"fitres.status": ConfigRecord({"code": 0, "message": "some text"})},
                {"extra": ConfigRecord({})}):
        with pytest.raises(EgressError):
            check_secagg_content(RecordDict(bad), policy)  # type: ignore[arg-type]


@pytest.mark.parametrize("weight", [0, 5, 19])
def test_e7_a_small_weight_never_leaves(weight: int) -> None:
    with pytest.raises(EgressError, match="weight"):
        build_secagg_fit_reply(_request(), {B1: np.ones(2)}, weight,
                               ReplyPayload(num_examples=40), EgressPolicy())


# --- Flower's SecAgg+ in-process -------------------------------------------------------
class _LoopbackGrid:
    """Each pushed message is answered at once by an in-process ClientApp (per-node state)."""

    def __init__(self, app: ClientApp, nodes: Iterable[int]) -> None:
        self.app = app
        self.contexts = {n: Context(run_id=1, node_id=n, node_config={"k-min": 20},
                                    state=RecordDict(), run_config={}) for n in nodes}
        self.replies: dict[str, Message] = {}

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for msg in messages:
            mid = str(uuid.uuid4())
            msg.metadata.__dict__["_message_id"] = mid
            # the wire copies the content (the mod pops from its configs)
            delivered = Message(recorddict_from_proto(recorddict_to_proto(msg.content)),
                                dst_node_id=msg.metadata.dst_node_id,
                                message_type=msg.metadata.message_type)
            delivered.metadata.__dict__["_message_id"] = mid
            try:
                reply = self.app(delivered, self.contexts[msg.metadata.dst_node_id])
            except Exception as exc:  # what the SuperNode turns into an error reply
                reply = Message(Error(code=0, reason=type(exc).__name__), reply_to=delivered)
            self.replies[mid] = reply
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]


UPDATES = {1: (40, 0.010), 2: (60, -0.020), 3: (100, 0.030), 4: (50, 0.005), 5: (30, 0.001)}


def _node_app(failing: set[int]) -> ClientApp:
    app = ClientApp(mods=[secagg_client._guard, secagg_client._secagg_only])

    @app.train()
    def train(message: Message, context: Context) -> Message:
        node = context.node_id
        if node in failing:
            raise RuntimeError("this node drops out")
        n, value = UPDATES[node]
        delta = {B1: np.full((3, 2), value), B2: np.full((4, 2), -value)}
        return build_secagg_fit_reply(message, delta, n, ReplyPayload(num_examples=n),
                                      EgressPolicy())

    return app


def _parent() -> dict[str, np.ndarray]:
    return {A1: np.ones((2, 5), dtype=np.float32), B1: np.zeros((3, 2), dtype=np.float32),
            B2: np.zeros((4, 2), dtype=np.float32)}


def _exchange(nodes: list[int], failing: set[int], **settings: Any) -> Any:
    privacy = PrivacySettings(secagg=1, secagg_timeout=5.0, **settings)
    return secagg_exchange(_LoopbackGrid(_node_app(failing), nodes), run_id=1,  # type: ignore[arg-type]
                           round_number=1, nodes=nodes, parent=_parent(),
                           config={"round": 1}, privacy=privacy, interval=0.0)


@pytest.mark.parametrize(("nodes", "failing"), [([1, 2, 3], set()), ([1, 2, 3, 4], {4})])
def test_secagg_returns_the_weighted_mean_within_the_reported_bound(
    nodes: list[int], failing: set[int],
) -> None:
    # Prepare
    live = [n for n in nodes if n not in failing]
    expected = sum(UPDATES[n][0] * UPDATES[n][1] for n in live) / sum(UPDATES[n][0] for n in live)

    # Execute
    outcome = _exchange(nodes, failing)

    # Assert
    assert sorted(outcome.mean_delta) == [B1, B2]
    assert list(outcome.dropped) == sorted(failing)
    assert outcome.total_weight == sum(UPDATES[n][0] for n in live)
    assert 0 < outcome.quantization_bound < 1e-4
    assert float(np.max(np.abs(outcome.mean_delta[B1] - expected))) <= outcome.quantization_bound
    assert float(np.max(np.abs(outcome.mean_delta[B2] + expected))) <= outcome.quantization_bound
    assert sum(outcome.bytes_up.values()) > 0


def test_s1_secagg_below_the_threshold_raises_naming_the_stage() -> None:
    with pytest.raises(FederationError, match="halted at stage collect-masked-vectors with 3 "
                                              "of 5 nodes alive"):
        _exchange([1, 2, 3, 4, 5], {4, 5}, secagg_shares=5, secagg_threshold=4)


# --- the CLI refuses before anything starts --------------------------------------------
@pytest.mark.parametrize(("extra", "needle"), [
    (["--secagg", "--mode", "exact"], "SecAgg+ needs aggregation mode frozen-a"),
    (["--secagg", "--min-nodes", "2"], ">= 3 nodes"),
    (["--dp", "server", "--dp-noise-multiplier", "0"], "noise_multiplier must be > 0"),
])
def test_round_run_refuses_a_privacy_setup_before_looking_for_a_coordinator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str,
) -> None:
    from hermes_fed.cli import main

    code = main(["round", "run", "--dir", str(tmp_path), "--base-model", str(tmp_path),
                 "--min-nodes", "3", *extra])
    err = capsys.readouterr().err
    assert code == 1
    assert needle in err
    assert "no coordinator is serving" not in err


def test_certs_init_makes_a_ca_signed_loopback_server_certificate(tmp_path: Path) -> None:
    from cryptography import x509

    from coordinator.deploy.certs import init_certs

    paths = init_certs(tmp_path / "c")
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    assert paths.ca_key.stat().st_mode & 0o077 == 0
    assert paths.server_key.stat().st_mode & 0o077 == 0
    with pytest.raises(ConfigError, match="already holds a CA"):
        init_certs(tmp_path / "c")
