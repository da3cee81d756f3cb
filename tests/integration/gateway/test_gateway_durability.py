"""An answered call is never lost: ``kill -9`` of the gateway while clients call it.

Invariant 6 (acknowledged = durable) at the gateway: a client gets its answer only after the
call's capture is appended and committed, so every answer a client received is in the log
after the process is killed; the log's chain verifies; a restarted gateway rebuilds the
sessions from the log and extends them where they stood.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from .stack import TOKEN, Node, Server, capture_process_of, metric, verified_trajectories

pytestmark = pytest.mark.slow


def _client(gateway: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0)


@pytest.mark.parametrize(("log", "capture_sync", "capture_process"), [
    ("sqlite", "commit", True), ("sqlite", "behind", True), ("sqlite", "commit", False),
    pytest.param("postgres", "commit", True, marks=pytest.mark.postgres),
])
def test_kill_9_after_answers_loses_no_captured_call(workdir: Path, stub: Server,
                                                    request: pytest.FixtureRequest, log: str,
                                                    capture_sync: str,
                                                    capture_process: bool) -> None:
    # Prepare: 12 client threads calling as fast as they can, each call a new session
    # (behind: the commit writes the WAL, the fsync follows the answer; a killed process
    # loses nothing the OS holds). With a capture process, the calls that overlap are
    # captured there: it is ready before the first call. On PostgreSQL (the production
    # log, a schema of its own) both writers append through the server's lock.
    store = {} if log == "sqlite" else {"store_url": request.getfixturevalue("pg_url"),
                                        "schema": request.getfixturevalue("pg_schema")}
    node = Node(workdir / f"durable-node-{log}-{capture_sync}-{capture_process}", stub.url,
                **store, capture_sync=capture_sync, capture_process=capture_process)
    gateway = node.gateway().start()
    if capture_process:
        capture_process_of(gateway)
    answered: list[tuple[str, str, str]] = []  # (trajectory id, user text, answer)
    lock = threading.Lock()
    enough = threading.Event()

    def agent(worker: int) -> None:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0,
                               timeout=10)
        for i in range(10_000):
            text = f"worker {worker} call {i}"
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model="hermes-fed", user=f"w{worker}",
                    messages=[{"role": "user", "content": text}])
            except openai.APIConnectionError:
                return  # the gateway is gone
            answer = raw.parse().choices[0].message.content or ""
            with lock:
                answered.append((raw.headers["x-hermes-trajectory-id"], text, answer))
                if len(answered) >= 150:
                    enough.set()

    threads = [threading.Thread(target=agent, args=(w,)) for w in range(12)]
    for t in threads:
        t.start()

    # Execute: kill -9 while calls are in flight
    assert enough.wait(120), f"too few answers before the kill:\n{gateway.log()[-2000:]}"
    by_process = metric(httpx.get(gateway.url + "/metrics").text,
                         "hermes_gateway_capture_process_calls_total")
    gateway.kill9()
    for t in threads:
        t.join(30)
    with lock:
        received = list(answered)

    # Assert: every answer a client received is in the log, whole (and with a capture
    # process, some were captured there: the kill hit that path too)
    assert (by_process > 0) == capture_process
    trajectories = verified_trajectories(node)
    missing = [r for r in received if r[0] not in trajectories]
    assert not missing, f"{len(missing)} of {len(received)} answered calls lost"
    for tid, text, answer in received:
        assert trajectories[tid]["messages"] == [{"role": "user", "content": text},
                                                 {"role": "assistant", "content": answer}]


def test_a_restarted_gateway_extends_sessions_where_they_stood(workdir: Path, stub: Server) -> None:
    # Prepare: one answered call, then the gateway is killed
    node = Node(workdir / "restart-node", stub.url)
    gateway = node.gateway().start()
    client = _client(gateway)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "first question"}]
    first = client.chat.completions.with_raw_response.create(
        model="hermes-fed", user="restart", messages=messages)  # type: ignore[arg-type]
    tid = first.headers["x-hermes-trajectory-id"]
    messages += [first.parse().choices[0].message.model_dump(exclude_none=True),
                 {"role": "user", "content": "second question"}]
    gateway.kill9()

    # Execute: a new gateway process, the conversation goes on
    gateway = node.gateway().start()
    try:
        client = _client(gateway)
        second = client.chat.completions.with_raw_response.create(
            model="hermes-fed", user="restart", messages=messages)  # type: ignore[arg-type]
    finally:
        gateway.stop()

    # Assert: the same trajectory, extended by the new turns only
    assert second.headers["x-hermes-trajectory-id"] == tid
    store = node.open_store()
    try:
        events = store.read_stream("session-" + tid.split("-")[1])
    finally:
        store.close()
    assert [e.type for e in events] == ["SessionStarted", "TrajectoryRecorded", "TrajectoryExtended"]
    assert [m["content"] for m in events[2].data["messages"]] == ["second question",
                                                                  "echo: second question"]


def test_behind_fsyncs_every_group_commit_after_its_answer(workdir: Path, stub: Server) -> None:
    # Prepare: a gateway whose capture syncs behind
    node = Node(workdir / "behind-node", stub.url, capture_sync="behind")
    gateway = node.gateway().start()
    try:
        client = _client(gateway)

        # Execute: 20 calls, one at a time, then the metrics
        for i in range(20):
            client.chat.completions.create(model="hermes-fed", user="behind",
                                           messages=[{"role": "user", "content": f"call {i}"}])
        metrics = ""
        for _ in range(500):  # the last fsync may still be under way: poll the gauge
            metrics = httpx.get(gateway.url + "/metrics").text
            if metric(metrics, "hermes_gateway_capture_unsynced_commits") == 0:
                break
        log_text = gateway.log()
    finally:
        gateway.stop()

    # Assert: every commit covered by an fsync (some may share one), each window measured,
    # and the gateway said which mode it runs in
    commits = metric(metrics, "hermes_gateway_capture_batch_calls_count")
    syncs = metric(metrics, "hermes_gateway_capture_sync_lag_seconds_count")
    assert metric(metrics, "hermes_gateway_capture_unsynced_commits") == 0
    assert commits >= 20 and 1 <= syncs <= commits
    assert metric(metrics, "hermes_gateway_capture_sync_lag_seconds_sum") > 0
    assert "capture_sync=behind" in log_text
    assert len(verified_trajectories(node)) == 20


def test_wal_checkpoints_run_on_their_own_thread_and_keep_the_wal_bounded(
        workdir: Path, stub: Server) -> None:
    # Prepare: a gateway on a SQLite log (its connections never checkpoint on a commit)
    node = Node(workdir / "checkpoint-node", stub.url)
    gateway = node.gateway().start()
    wal = workdir / "checkpoint-node" / "var" / "events.db-wal"
    try:
        client = _client(gateway)

        # Execute: 240 calls, each a new session (about 10 WAL pages each: past the
        # checkpoint's 1,000), then the metrics once a checkpoint is counted
        for i in range(240):
            client.chat.completions.create(
                model="hermes-fed", user=f"ckpt-{i}",
                messages=[{"role": "user", "content": f"session {i}: " + "words " * 60}])
        metrics = ""
        for _ in range(500):  # the checkpoint thread may still be copying: poll the count
            metrics = httpx.get(gateway.url + "/metrics").text
            if metric(metrics, "hermes_gateway_wal_checkpoint_seconds_count") >= 1:
                break
        wal_bytes = wal.stat().st_size
    finally:
        gateway.stop()

    # Assert: the checkpoint thread copied the WAL, which stayed bounded (it grows without
    # end when nothing checkpoints), and every call is in the log
    assert metric(metrics, "hermes_gateway_wal_checkpoint_seconds_count") >= 1
    assert metric(metrics, "hermes_gateway_wal_checkpoint_frames_total") >= 1000
    assert wal_bytes < 2000 * 4120
    assert len(verified_trajectories(node)) == 240


@pytest.mark.parametrize(("store_url", "capture_sync", "message"), [
    # refused before anything opens
    ("postgresql+psycopg://postgres@127.0.0.1:5432/test", "behind",
     "hermes-fed: error: gateway.capture_sync = 'behind' is for a SQLite log"),
    # the start-up itself fails (no database there): uvicorn logs it, the command fails
    ("postgresql+psycopg://nobody@127.0.0.1:1/none", "commit",
     "hermes-fed: error: the gateway did not start"),
])
def test_a_gateway_that_cannot_start_exits_1_and_says_why(
        workdir: Path, stub: Server, store_url: str, capture_sync: str, message: str) -> None:
    # Prepare
    node = Node(workdir / f"unstartable-{capture_sync}", stub.url, store_url=store_url,
                capture_sync=capture_sync)

    # Execute
    gateway = node.gateway()
    with pytest.raises(RuntimeError) as failed:
        gateway.start()

    # Assert: a failed command (a supervisor sees it), with the reason on stderr
    assert "['node', 'gateway'] exited 1" in str(failed.value)
    assert message in gateway.log()


def test_a_lone_call_commits_inline_and_concurrent_calls_share_group_commits(
        workdir: Path, stub: Server) -> None:
    # Prepare: the gateway's own writer (a capture process takes concurrent captures:
    # test_gateway_capture_process)
    node = Node(workdir / "inline-node", stub.url, capture_process=False)
    gateway = node.gateway().start()
    try:
        client = _client(gateway)

        # Execute: 10 calls one at a time, then 8 agents calling at once, 20 calls each
        for i in range(10):
            client.chat.completions.create(model="hermes-fed", user="lone",
                                           messages=[{"role": "user", "content": f"lone {i}"}])
        lone = httpx.get(gateway.url + "/metrics").text

        def agent(worker: int) -> None:
            own = _client(gateway)
            for i in range(20):
                own.chat.completions.create(
                    model="hermes-fed", user=f"crowd-{worker}",
                    messages=[{"role": "user", "content": f"crowd {worker} {i}"}])

        threads = [threading.Thread(target=agent, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        crowd = httpx.get(gateway.url + "/metrics").text
    finally:
        gateway.stop()

    # Assert: alone, every capture committed on the loop's thread; in a crowd most went to
    # the writer, which grouped them; every call is in the log either way
    assert metric(lone, "hermes_gateway_capture_inline_total") == 10
    inline = metric(crowd, "hermes_gateway_capture_inline_total") - 10
    commits = metric(crowd, "hermes_gateway_capture_batch_calls_count") - 10
    grouped_calls = metric(crowd, "hermes_gateway_capture_batch_calls_sum") - 10
    assert inline < 80, f"{inline} of 160 concurrent captures committed inline"
    assert grouped_calls == 160 and commits < 160  # some commits carried several calls
    assert len(verified_trajectories(node)) == 170


def test_a_lone_capture_never_holds_the_event_loop_on_another_writers_lock(
        workdir: Path, stub: Server) -> None:
    # Prepare: a gateway, one answered call (the log exists), then another process's
    # connection takes the log's write lock (as the daemon's projections do)
    node = Node(workdir / "locked-node", stub.url)
    gateway = node.gateway().start()
    try:
        client = _client(gateway)
        client.chat.completions.create(model="hermes-fed", user="locked",
                                       messages=[{"role": "user", "content": "first"}])
        holder = sqlite3.connect(node.workdir / "var" / "events.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        answered: list[str] = []

        def call() -> None:
            done = client.chat.completions.create(
                model="hermes-fed", user="locked",
                messages=[{"role": "user", "content": "while the log is locked"}])
            answered.append(done.choices[0].message.content or "")

        # Execute: a lone call while the lock is held
        caller = threading.Thread(target=call)
        caller.start()
        metrics = ""
        for _ in range(500):  # poll until the capture has gone to the writer
            metrics = httpx.get(gateway.url + "/metrics").text
            if metric(metrics, "hermes_gateway_capture_inline_busy_total") >= 1:
                break
        health = httpx.get(gateway.url + "/health", timeout=5)  # the loop still serves
        waiting = not answered
        holder.execute("ROLLBACK")
        holder.close()
        caller.join(60)
        after = httpx.get(gateway.url + "/metrics").text
    finally:
        gateway.stop()

    # Assert: handed to the writer at once, the gateway answered /health meanwhile, and the
    # call was answered (and captured) once the lock was free
    assert metric(metrics, "hermes_gateway_capture_inline_busy_total") == 1
    assert health.status_code == 200 and waiting
    assert answered == ["echo: while the log is locked"]
    assert metric(after, "hermes_gateway_capture_inline_total") == 1  # the first call
    assert len(verified_trajectories(node)) == 2  # two conversations
