"""The node daemon over a real gRPC connection: the bad-input contract, idempotent retry,
the SDK, A/B assignment across restarts, metrics, TLS and graceful shutdown.

The daemon is a real subprocess on 127.0.0.1 with the redaction gate on, over SQLite and
again over PostgreSQL (a fresh schema).
"""

from __future__ import annotations

import json
import secrets
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hermes_fed.client import IngestError, envelope
from hermes_fed.client.transport import events_pb2, ingest_pb2
from hermes_fed.events import NewEvent

from .ingest_node import TENANT, TOKEN, NodeProcess

pytestmark = pytest.mark.slow

EMAIL = "mary.major@example.org"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                               marks=pytest.mark.postgres)])
def node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[NodeProcess]:
    workdir = tmp_path_factory.mktemp(f"node-{request.param}")
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'acme.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        schema = f"t_{secrets.token_hex(6)}"
    process = NodeProcess(workdir, url, schema)
    process.start()
    yield process
    process.stop()
    if schema is not None:
        import psycopg

        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def good(stream: str = "session-c1", **overrides: Any) -> events_pb2.EventEnvelope:
    fields: dict[str, Any] = {
        "event_id": str(uuid.uuid4()), "tenant_id": TENANT, "stream_id": stream,
        "type": "SessionContinued", "data_json": b'{"trajectory_id": "t-1"}'}
    fields.update(overrides)
    return events_pb2.EventEnvelope(**fields)


def raw_batch(*envelopes: events_pb2.EventEnvelope) -> bytes:
    return bytes(ingest_pb2.AppendEventsRequest(events=list(envelopes)).SerializeToString())


BIG = json.dumps({"trajectory_id": "t" * 70_000}).encode()
GOOD_BYTES = raw_batch(good(stream_id="session-abc"))

# (case, request bytes, status, text the message must contain: the field)
CONTRACT = [
    ("malformed protobuf", b"\x0a\xff\xff\xff", "INVALID_ARGUMENT", "malformed protobuf"),
    ("invalid UTF-8 in a string field", GOOD_BYTES.replace(b"session-abc", b"session-a\xffc"),
     "INVALID_ARGUMENT", "events[0].stream_id: invalid UTF-8"),
    ("invalid UTF-8 in data", raw_batch(good(data_json=b'{"trajectory_id": "\xc3"}')),
     "INVALID_ARGUMENT", "events[0].data_json: invalid UTF-8"),
    ("unknown event type", raw_batch(good(), good(type="Teleported")), "INVALID_ARGUMENT",
     "events[1].type"),
    ("schema violation", raw_batch(good(data_json=b'{"trajectory_id": 7}')),
     "INVALID_ARGUMENT", "events[0].data.trajectory_id"),
    ("oversized event", raw_batch(good(), good(data_json=BIG)), "RESOURCE_EXHAUSTED",
     "events[1]: "),
    ("missing event id", raw_batch(good(event_id="")), "INVALID_ARGUMENT", "events[0].event_id"),
    ("missing stream id", raw_batch(good(stream_id="")), "INVALID_ARGUMENT",
     "events[0].stream_id"),
    ("missing tenant id", raw_batch(good(tenant_id="")), "INVALID_ARGUMENT",
     "events[0].tenant_id"),
    ("another tenant's id", raw_batch(good(), good(tenant_id="globex")), "PERMISSION_DENIED",
     "events[1].tenant_id"),
]


@pytest.mark.parametrize(("case", "raw", "code", "field"), CONTRACT, ids=[c[0] for c in CONTRACT])
def test_bad_input_gets_its_status_names_the_field_and_writes_nothing(
    node: NodeProcess, case: str, raw: bytes, code: str, field: str
) -> None:
    # Prepare
    client = node.client()
    before = len(client.read_log())

    # Execute
    with pytest.raises(IngestError) as caught:
        client.transport.append_raw(raw)

    # Assert
    assert caught.value.code == code, caught.value
    assert field in caught.value.details
    assert len(client.read_log()) == before
    assert node.alive()


@pytest.mark.parametrize(("token", "problem"), [(None, "missing"), ("x" * 26, "wrong")])
def test_calls_without_the_token_are_unauthenticated(
    node: NodeProcess, token: str | None, problem: str
) -> None:
    # Prepare
    client = node.client(token=token or TOKEN)
    if token is None:
        client.transport._metadata = ()
    calls = [
        lambda: client.transport.append_raw(GOOD_BYTES),
        lambda: client.read_log(),
        lambda: client.assign_variant("ab", "u", {"a": 1, "b": 1}),
        lambda: client.append_stream([[NewEvent(stream_id="session-z", type="SessionEnded",
                                                data={})]]),
    ]

    # Execute / Assert: every RPC kind is guarded.
    for call in calls:
        with pytest.raises(IngestError) as caught:
            call()
        assert caught.value.code == "UNAUTHENTICATED"
        assert f"authorization: {problem} bearer token" in caught.value.details


def test_a_retried_batch_is_a_no_op_returning_the_original_positions(node: NodeProcess) -> None:
    # Prepare
    client = node.client()
    events = [NewEvent(stream_id="session-retry", type="SessionContinued",
                       data={"trajectory_id": f"t-{i}"}) for i in range(5)]
    first = client.append(events)

    # Execute: the same batch again, as after a timeout whose reply was lost.
    again = client.append(events)

    # Assert
    assert [r.position for r in again] == [r.position for r in first]
    assert all(r.duplicate for r in again) and not any(r.duplicate for r in first)
    assert len(client.read_stream("session-retry")) == 5


def test_a_stale_expected_version_is_aborted_and_writes_nothing(node: NodeProcess) -> None:
    # Prepare
    client = node.client()
    stream = f"session-occ-{uuid.uuid4().hex[:8]}"
    client.append([NewEvent(stream_id=stream, type="SessionEnded", data={})], {stream: 0})

    # Execute: a writer that still believes the stream is new.
    with pytest.raises(IngestError) as caught:
        client.append([NewEvent(stream_id=stream, type="SessionEnded", data={})], {stream: 0})

    # Assert
    assert caught.value.code == "ABORTED"
    assert f"stream {stream} is at version 1, append expected 0" in caught.value.details
    assert len(client.read_stream(stream)) == 1


def test_a_batch_with_one_bad_event_writes_nothing(node: NodeProcess) -> None:
    # Prepare
    client = node.client()
    request = raw_batch(good("session-atomic"), good("session-atomic"),
                        good("session-atomic", data_json=b"{}"))

    # Execute
    with pytest.raises(IngestError) as caught:
        client.transport.append_raw(request)

    # Assert
    assert caught.value.code == "INVALID_ARGUMENT"
    assert "events[2].data.trajectory_id" in caught.value.details
    assert client.read_stream("session-atomic") == []


def test_a_session_recorded_with_the_sdk_is_redacted_in_the_log(node: NodeProcess) -> None:
    # Prepare
    client = node.client(batch_size=50)
    session = client.session("user-17", "base-v1")

    # Execute
    tid = session.trajectory(
        task=f"email {EMAIL}", task_type="email",
        messages=[{"role": "user", "content": f"email {EMAIL} the report"},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"id": "c1", "name": "send", "arguments": {"to": EMAIL}}]},
                  {"role": "tool", "tool_call_id": "c1", "name": "send",
                   "content": json.dumps({"sent_to": EMAIL})},
                  {"role": "assistant", "content": "sent"}])
    session.retried(tid)
    session.edited(tid, 0.25)
    session.accepted(tid)
    session.continued(tid)
    session.error(tid, "timeout")
    session.end()
    client.close()

    # Assert
    stored = node.client().read_stream(session.stream_id)
    assert [e.type for e in stored] == [
        "SessionStarted", "TrajectoryRecorded", "RetryRequested", "OutputEdited",
        "OutputAccepted", "SessionContinued", "ErrorReported", "SessionEnded"]
    trajectory = stored[1]
    assert EMAIL not in json.dumps(dict(trajectory.data))
    assert trajectory.data["messages"][1]["tool_calls"][0]["arguments"]["to"] == (
        "<EMAIL_ADDRESS_1>")
    assert json.loads(trajectory.data["messages"][2]["content"]) == {
        "sent_to": "<EMAIL_ADDRESS_1>"}
    assert trajectory.metadata["redaction"]["entities"]["EMAIL_ADDRESS"] >= 4


def test_client_streaming_append_commits_each_batch(node: NodeProcess) -> None:
    # Prepare
    client = node.client()
    batches = [[NewEvent(stream_id=f"session-stream-{b}", type="SessionContinued",
                         data={"trajectory_id": f"t-{i}"}) for i in range(3)] for b in range(4)]

    # Execute
    results = client.append_stream(batches)

    # Assert
    assert len(results) == 12 and not any(r.duplicate for r in results)
    assert [r.position for r in results] == sorted(r.position for r in results)
    assert len(client.read_stream("session-stream-3")) == 3


def test_a_bad_batch_in_a_stream_names_its_batch_and_keeps_earlier_ones(
    node: NodeProcess,
) -> None:
    # Prepare
    client = node.client()
    ok = [NewEvent(stream_id="session-stream-ok", type="SessionEnded", data={})]
    bad = [NewEvent(stream_id="session-stream-bad", type="SessionEnded", data={})]
    requests = [ingest_pb2.AppendEventsRequest(events=[envelope(e, TENANT) for e in ok]),
                ingest_pb2.AppendEventsRequest(events=[envelope(e, "globex") for e in bad])]

    # Execute
    with pytest.raises(IngestError) as caught:
        client.transport.append_stream(requests)

    # Assert
    assert caught.value.code == "PERMISSION_DENIED"
    assert caught.value.details.startswith("batches[1].events[0].tenant_id:")
    assert len(client.read_stream("session-stream-ok")) == 1
    assert client.read_stream("session-stream-bad") == []


def test_read_log_pages_by_position(node: NodeProcess) -> None:
    # Prepare
    client = node.client()
    client.append([NewEvent(stream_id="session-pages", type="SessionContinued",
                            data={"trajectory_id": f"t-{i}"}) for i in range(4)])
    everything = client.read_log()

    # Execute
    page = client.read_log(after=everything[1].position, limit=2)

    # Assert
    assert [e.position for e in page] == [e.position for e in everything[2:4]]


def test_metrics_count_ingested_rejected_and_redacted(node: NodeProcess) -> None:
    # Prepare: one good session with PII, every bad case once, one call without the token.
    client = node.client()
    session = client.session("user-m", "m1")
    session.trajectory(task=f"mail {EMAIL}", messages=[{"role": "user", "content": EMAIL}])
    client.flush()
    for _case, raw, _code, _field in CONTRACT:
        with pytest.raises(IngestError):
            client.transport.append_raw(raw)
    with pytest.raises(IngestError):
        node.client(token="y" * 26).transport.append_raw(GOOD_BYTES)

    # Execute
    text = urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics",
                                  timeout=10).read().decode()

    # Assert
    def value(name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name))

    assert value('hermes_node_events_ingested_total{type="TrajectoryRecorded"}') >= 1
    for reason in ("malformed_protobuf", "invalid_utf8", "unknown_event_type",
                   "schema_violation", "oversized_event", "missing_id", "wrong_tenant",
                   "unauthenticated"):
        assert value(f'hermes_node_events_rejected_total{{reason="{reason}"}}') >= 1, reason
    assert value('hermes_node_redactions_total{entity_type="EMAIL_ADDRESS"}') >= 1
    assert value("hermes_node_append_seconds_count") >= 1
    # What start-up built (presidio, the recognizers, the name lexicon) is out of the
    # collector's full passes: tens of thousands of objects, not a handful.
    assert value("hermes_node_gc_frozen_objects") > 50_000


def _metric(node: NodeProcess, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics",
                                  timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " "))


def test_concurrent_clients_share_group_commits_and_lose_nothing(node: NodeProcess) -> None:
    # Prepare: 8 clients append small batches at once, until the node has committed some
    # group of more than one batch (or 30 s pass)
    groups0 = _metric(node, "hermes_node_group_commit_batches_count")
    batches0 = _metric(node, "hermes_node_group_commit_batches_sum")
    acknowledged: list[uuid.UUID] = []
    lock = threading.Lock()
    grouped = threading.Event()
    deadline = time.monotonic() + 30

    def pump(k: int) -> None:
        client = node.client()
        for i in range(1000):
            if grouped.is_set() or time.monotonic() > deadline:
                break
            batch = [NewEvent(stream_id=f"session-g{k}-{i}", type="SessionContinued",
                              data={"trajectory_id": f"t-{k}-{i}-{j}"}) for j in range(5)]
            ids = [r.event_id for r in client.append(batch)]
            with lock:
                acknowledged.extend(ids)
        client.transport.close()

    # Execute
    threads = [threading.Thread(target=pump, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        groups = _metric(node, "hermes_node_group_commit_batches_count") - groups0
        batches = _metric(node, "hermes_node_group_commit_batches_sum") - batches0
        if batches > groups > 0:
            grouped.set()
        for t in threads:
            t.join(0.2)

    # Assert: fewer commits than batches, and every acknowledged event stored once
    groups = _metric(node, "hermes_node_group_commit_batches_count") - groups0
    batches = _metric(node, "hermes_node_group_commit_batches_sum") - batches0
    assert batches > groups > 0
    assert batches * 5 == len(acknowledged) == len(set(acknowledged))
    with node.open_store() as store:
        stored = {e.event_id for e in store.read() if e.stream_id.startswith("session-g")}
    assert set(acknowledged) == stored


def test_log_still_verifies(node: NodeProcess) -> None:
    # Execute
    with node.open_store() as store:
        report = store.verify()

    # Assert
    assert report.ok, str(report)


def test_assignment_is_stable_across_a_restart(node: NodeProcess) -> None:
    # Prepare
    arms = {"control": 0.5, "treatment": 0.5}
    users = [f"user-{i}" for i in range(20)]
    client = node.client()
    before = {u: client.assign_variant("ab-restart", u, arms) for u in users}

    # Execute
    assert node.stop() == 0
    node.start()
    client = node.client()
    after = {u: client.assign_variant("ab-restart", u, arms) for u in users}

    # Assert
    assert {u: a.variant for u, a in after.items()} == {u: a.variant for u, a in before.items()}
    assert all(a.duplicate for a in after.values())
    recorded = client.read_stream("abtest-ab-restart")
    assert len(recorded) == 20
    assert {e.data["user_ref"]: e.data["variant"] for e in recorded} == {
        u: a.variant for u, a in before.items()}
    assert len({a.variant for a in before.values()}) == 2


def test_sigterm_finishes_in_flight_batches(node: NodeProcess) -> None:
    # Prepare: appends keep flowing while the signal arrives.
    client = node.client()
    acknowledged: list[uuid.UUID] = []
    stop = threading.Event()

    def pump() -> None:
        i = 0
        while not stop.is_set():
            batch = [NewEvent(stream_id="session-term", type="SessionContinued",
                              data={"trajectory_id": f"t-{i}-{k}"}) for k in range(20)]
            i += 1
            try:
                acknowledged.extend(r.event_id for r in client.append(batch))
            except IngestError:
                return

    thread = threading.Thread(target=pump)
    thread.start()
    while len(acknowledged) < 100:
        thread.join(0.05)

    # Execute
    code = node.signal(signal.SIGTERM)
    stop.set()
    thread.join()

    # Assert
    assert code == 0
    assert "event=node_stopped" in node.log()
    with node.open_store() as store:
        stored = {e.event_id for e in store.read_stream("session-term")}
        assert store.verify().ok
    assert set(acknowledged) <= stored
    node.start()  # the module's later tests (none today) get a running node again


def test_tls_with_token(tmp_path: Path) -> None:
    # Prepare
    cert, key = _self_signed(tmp_path)
    node = NodeProcess(tmp_path / "tls", f"sqlite:///{tmp_path / 'tls.db'}",
                       tls={"cert_file": str(cert), "key_file": str(key)})
    node.root_certificates = cert.read_bytes()
    node.start()
    try:
        # Execute
        results = node.client().append([NewEvent(stream_id="session-tls", type="SessionEnded",
                                                 data={})])
        plain = NodeProcess(tmp_path / "plain", "sqlite:///unused.db")
        plain.port = node.port
        plain_client = plain.client(timeout_s=2.0)
        with pytest.raises(IngestError) as caught:
            plain_client.append([NewEvent(stream_id="session-tls", type="SessionEnded", data={})])

        # Assert
        assert results[0].position == 1
        assert caught.value.code == "UNAVAILABLE"
    finally:
        assert node.stop() == 0


def _self_signed(directory: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "node.crt", directory / "node.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_envelope_helper_round_trips_through_the_proto() -> None:
    # Prepare
    event = NewEvent(stream_id="session-x", type="SessionEnded", data={"reason": "done"},
                     subject="u1", metadata={"actor": "agent"})

    # Execute
    message = events_pb2.EventEnvelope.FromString(envelope(event, TENANT).SerializeToString())

    # Assert
    assert (message.event_id, message.stream_id, message.subject) == (
        str(event.event_id), "session-x", "u1")
    assert json.loads(message.data_json) == {"reason": "done"}
    assert json.loads(message.metadata_json) == {"actor": "agent"}
