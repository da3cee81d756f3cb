"""What the node's gateway adds over a direct call, and how fast it captures durably.

Everything runs as real processes on 127.0.0.1 in front of the same fast local upstream
(``tests/integration/gateway/stub_upstream.py``: Starlette on uvicorn, answers at once):

- **latency** with one client, interleaved (each round sends the same call to every
  contender in turn, starting with the next one each round, so drift on a shared machine
  and the slot after another's call hit all alike): non-streaming (to the
  last byte) and streaming (to the first event and to ``[DONE]``); p50/p90/p99 per
  contender, the added p50/p99 over the direct call (difference of quantiles) and the
  median of the paired per-round differences. The workload is an agent's: conversations of
  three calls, each repeating the history (so the gateway's session assembly extends a
  trajectory on calls 2 and 3), a user per conversation, an email address in every user
  turn (so redaction has something to do);
- **requests/s** with ``--threads`` client threads for ``--seconds`` (non-streaming,
  persistent ``http.client`` connections), ``--throughput-runs`` times per contender in
  alternating order (ABC CBA), the server's CPU per request (with its capture process),
  and for the gateway a check that every answered call is in the log (``captured``):
  capture is on and durable (SQLite, synchronous=FULL; an answer is released only after
  its group commit; the same with ``capture_sync = "behind"``, with
  ``synchronous=NORMAL`` and with ``capture_process = false`` beside it);
- **capture alone** (in-process, no HTTP): calls/s through the gateway's ``CaptureWriter``
  (redaction gate + append + commit) with 1 submitting thread (a commit per call) and with
  ``--threads`` (group commits), the ceiling the HTTP layer sits on.

LiteLLM's proxy joins the same run with ``--litellm URL`` (already running in front of
``{upstream}``, model ``--litellm-model``, key ``--litellm-key``) or ``--litellm-start
'COMMAND'`` (started by the bench; ``{upstream}``, ``{port}``, ``{config}`` and
``{workdir}`` are filled in: ``{config}`` is a LiteLLM config the bench writes, routing
``--litellm-model`` to the stub with a JSONL call logger on, LiteLLM's logging).

    .venv/bin/python bench/gateway/bench_gateway.py --out bench/gateway/results.json

Prints one JSON document (and writes it to ``--out``); never asserts a speed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration.gateway.stack import (  # noqa: E402
    TOKEN,
    Node,
    Server,
    capture_process_of,
    free_port,
    stub_upstream,
)

SYSTEM = "You are a support agent. Answer briefly and politely."
TURNS = 3


@dataclass(frozen=True, slots=True)
class Contender:
    name: str
    base_url: str  # ends in /v1
    model: str
    api_key: str = ""
    pid: int | None = None


def user_text(conversation: int, turn: int) -> str:
    return (f"Turn {turn}: my order {4711 + conversation} has not arrived; please send the "
            f"tracking link to customer{conversation % 997}@example.com and tell me when it "
            "will be delivered, the invoice is also missing from my account page.")


def conversation_call(conversation: int, turn: int, model: str) -> dict[str, Any]:
    """Call ``turn`` (0-based) of a conversation: the history so far plus a new user turn
    (the stub's answers are ``echo: <last user text>``, so the history is known)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    for t in range(turn + 1):
        messages.append({"role": "user", "content": user_text(conversation, t)})
        if t < turn:
            messages.append({"role": "assistant", "content": f"echo: {user_text(conversation, t)}"})
    return {"model": model, "messages": messages, "user": f"bench-user-{conversation}"}


class Client:
    """One persistent HTTP/1.1 connection (stdlib: the client's own CPU stays small)."""

    def __init__(self, contender: Contender) -> None:
        url = urllib.parse.urlsplit(contender.base_url)
        self.contender = contender
        self._host, self._port = url.hostname or "127.0.0.1", url.port or 80
        self._path = url.path.rstrip("/") + "/chat/completions"
        self._headers = {"Content-Type": "application/json"}
        if contender.api_key:
            self._headers["Authorization"] = f"Bearer {contender.api_key}"
        self._conn = http.client.HTTPConnection(self._host, self._port, timeout=30)

    def _send(self, body: dict[str, Any]) -> http.client.HTTPResponse:
        payload = json.dumps(body).encode()
        try:
            self._conn.request("POST", self._path, body=payload, headers=self._headers)
            return self._conn.getresponse()
        except (http.client.HTTPException, OSError):
            self._conn.close()
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
            self._conn.request("POST", self._path, body=payload, headers=self._headers)
            return self._conn.getresponse()

    def complete(self, body: dict[str, Any]) -> float:
        start = time.perf_counter()
        response = self._send(body)
        data = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200 or b'"choices"' not in data:
            raise RuntimeError(f"{self.contender.name}: HTTP {response.status}: {data[:200]!r}")
        return elapsed

    def stream(self, body: dict[str, Any]) -> tuple[float, float]:
        start = time.perf_counter()
        response = self._send({**body, "stream": True, "stream_options": {"include_usage": True}})
        if response.status != 200:
            raise RuntimeError(f"{self.contender.name}: HTTP {response.status}")
        first = None
        while True:
            line = response.readline()
            if not line:
                raise RuntimeError(f"{self.contender.name}: stream ended without [DONE]")
            if line.startswith(b"data:"):
                if first is None:
                    first = time.perf_counter() - start
                if line.strip() == b"data: [DONE]":
                    break
        response.read()
        assert first is not None
        return first, time.perf_counter() - start

    def close(self) -> None:
        self._conn.close()


def quantiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean())}


def latency(contenders: list[Contender], rounds: int, warmup: int) -> dict[str, Any]:
    clients = [Client(c) for c in contenders]
    samples: dict[str, dict[str, list[float]]] = {
        c.name: {"non_streaming": [], "streaming_first_event": [], "streaming_done": []}
        for c in contenders}
    try:
        for index in range(warmup + rounds):
            conversation, turn = divmod(index, TURNS)
            # each round starts with the next contender: the one right after the direct
            # call was ~0.4 ms slower whichever it was (swapping two gateways' slots moved
            # the difference with them), so a fixed order biased the comparison
            start = index % len(clients)
            for client in clients[start:] + clients[:start]:
                body = conversation_call(conversation, turn, client.contender.model)
                whole = client.complete(body)
                stream_body = conversation_call(conversation + 1_000_000, turn,
                                                client.contender.model)
                first, done = client.stream(stream_body)
                if index >= warmup:
                    s = samples[client.contender.name]
                    s["non_streaming"].append(whole)
                    s["streaming_first_event"].append(first)
                    s["streaming_done"].append(done)
    finally:
        for client in clients:
            client.close()
    out: dict[str, Any] = {name: {mode: quantiles(v) for mode, v in modes.items()}
                           for name, modes in samples.items()}
    direct = samples["direct"]
    for name, modes in samples.items():
        if name == "direct":
            continue
        added = {}
        for mode, values in modes.items():
            paired = (np.asarray(values) - np.asarray(direct[mode])) * 1e3
            added[mode] = {
                "p50_ms": out[name][mode]["p50_ms"] - out["direct"][mode]["p50_ms"],
                "p99_ms": out[name][mode]["p99_ms"] - out["direct"][mode]["p99_ms"],
                "paired_median_ms": float(np.median(paired))}
        out[name]["added_over_direct"] = added
    return out


def process_cpu_s(pid: int | None) -> float | None:
    """CPU seconds of ``pid`` and its live child processes (the gateway's capture process)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(process_cpu_s(int(child)) or 0.0 for child in children)


def throughput(contender: Contender, threads: int, seconds: float, offset: int) -> dict[str, Any]:
    done = [0] * threads
    errors: list[str] = []
    stop = threading.Event()

    def work(worker: int) -> None:
        client = Client(contender)
        conversation = offset + worker * 1_000_000
        try:
            while not stop.is_set():
                for turn in range(TURNS):
                    if stop.is_set():
                        break
                    client.complete(conversation_call(conversation, turn, contender.model))
                    done[worker] += 1
                conversation += 1
        except Exception as exc:  # reported, not raised: the other threads go on
            errors.append(str(exc)[:200])
        finally:
            client.close()

    cpu_before = process_cpu_s(contender.pid)
    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    time.sleep(seconds)  # the measured window (a bench, not a test)
    stop.set()
    for t in pool:
        t.join(60)
    elapsed = time.perf_counter() - started
    cpu_after = process_cpu_s(contender.pid)
    total = sum(done)
    cpu = None if cpu_before is None or cpu_after is None or not total \
        else (cpu_after - cpu_before) / total * 1e3
    return {"threads": threads, "seconds": elapsed, "requests": total,
            "requests_per_s": total / elapsed, "server_cpu_ms_per_request": cpu,
            "errors": errors[:5]}


def count_captured(node: Node) -> int:
    store = node.open_store()
    try:
        return sum(1 for _ in store.read(types=("TrajectoryRecorded", "TrajectoryExtended")))
    finally:
        store.close()


def capture_only(workdir: Path, calls: int, threads: int, synchronous: str) -> dict[str, Any]:
    """Calls/s through the gateway's CaptureWriter in-process (redaction + append + commit)."""
    from hermes_fed.serving.assembly import SessionState, TurnDigester
    from hermes_fed.serving.capture import CallContext, call_events
    from tenant_node.config import load_node_config
    from tenant_node.gateway.capture import CaptureWriter
    from tenant_node.gateway.metrics import GatewayMetrics
    from tenant_node.ingest.runtime import open_node_store

    node = Node(workdir / f"capture-only-{threads}-{synchronous}", "http://127.0.0.1:9",
                top={"sqlite_synchronous": synchronous})
    store = open_node_store(load_node_config(node.config_path))
    writer = CaptureWriter(store, GatewayMetrics())
    writer.start()
    digester = TurnDigester(b"b" * 32)
    per_thread = calls // threads

    def work(worker: int) -> None:
        for i in range(per_thread):
            conversation = worker * 1_000_000 + i
            turns = [{"role": "system", "content": SYSTEM},
                     {"role": "user", "content": user_text(conversation, 0)}]
            answer = {"role": "assistant", "content": f"echo: {user_text(conversation, 0)}"}
            state = SessionState(f"session-{conversation:032x}")
            chains = digester.chain([*turns, answer])
            reservation = state.reserve(chains[:-1], "user", time.time(), 60.0)
            ctx = CallContext(state.stream_id, f"bench-user-{conversation}", "base", None, None,
                              "chat")
            writer.submit(call_events(ctx, reservation, turns, answer, [], chains, 0, None)).result()

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    writer.stop()
    store.close()
    n = per_thread * threads
    return {"threads": threads, "synchronous": synchronous, "calls": n, "seconds": elapsed,
            "calls_per_s": n / elapsed, "events_per_call": 2}


def fsync_floor(workdir: Path, n: int = 50) -> dict[str, float]:
    """What one fsync of a small append costs on this disk: the floor of a durable commit
    (synchronous=FULL makes one per commit)."""
    path = workdir / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    times = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 512)
            start = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    return {"p50_ms": float(np.percentile(times, 50) * 1e3),
            "p99_ms": float(np.percentile(times, 99) * 1e3)}


LITELLM_LOGGER = '''
import json, os
from litellm.integrations.custom_logger import CustomLogger

class JsonlLogger(CustomLogger):
    def __init__(self):
        self.path = os.environ["HERMES_BENCH_LITELLM_CALLS"]
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"messages": kwargs.get("messages")}, default=str) + "\\n")

proxy_handler_instance = JsonlLogger()
'''


def start_litellm(command: str, upstream: str, model: str, key: str, workdir: Path
                  ) -> tuple[Server, Contender]:
    port = free_port()
    config = workdir / "litellm_config.yaml"
    config.write_text(json.dumps({
        "model_list": [{"model_name": model, "litellm_params": {
            "model": f"openai/{model}", "api_base": upstream + "/v1", "api_key": "unused"}}],
        "general_settings": {"master_key": key},
        "litellm_settings": {"telemetry": False, "drop_params": True,
                             "callbacks": ["bench_litellm_logger.proxy_handler_instance"]}}))
    (workdir / "bench_litellm_logger.py").write_text(LITELLM_LOGGER)
    argv = [p.format(upstream=upstream, port=port, config=config, workdir=workdir)
            for p in shlex.split(command)]
    if os.sep in argv[0] and Path(argv[0]).exists():
        argv[0] = str(Path(argv[0]).resolve())  # it starts in workdir (the logger's module)
    os.environ.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True",
                       "HERMES_BENCH_LITELLM_CALLS": str(workdir / "litellm_calls.jsonl"),
                       "PYTHONPATH": str(workdir)})
    server = Server(argv, port, workdir / "litellm.log", health="/health/liveliness")
    server.argv = argv
    old_cwd = os.getcwd()
    os.chdir(workdir)
    try:
        server.start(timeout_s=240)
    finally:
        os.chdir(old_cwd)
    assert server.process is not None
    return server, Contender("litellm", server.url + "/v1", model, key, server.process.pid)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300, help="latency rounds (300)")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up rounds (30)")
    parser.add_argument("--threads", type=int, default=8, help="client threads for req/s (8)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per req/s run (10)")
    parser.add_argument("--throughput-runs", type=int, default=2,
                        help="req/s runs per contender, alternating the order (2)")
    parser.add_argument("--capture-calls", type=int, default=4000,
                        help="calls of the in-process capture run (4000)")
    parser.add_argument("--litellm", help="a running LiteLLM proxy's base URL (ending in /v1)")
    parser.add_argument("--litellm-start", help="command starting LiteLLM's proxy ({upstream}, "
                                                "{port}, {config}, {workdir} filled in)")
    parser.add_argument("--litellm-model", default="bench-model", help="its model name")
    parser.add_argument("--litellm-key", default="sk-hermes-bench", help="its master key")
    parser.add_argument("--upstream-delay-ms", type=float, default=0.0,
                        help="the stub waits this long before every answer (a model's time "
                             "to answer; 0: at once, the default)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    load_before = os.getloadavg()
    stub = stub_upstream(workdir, args.upstream_delay_ms).start()
    servers = [stub]
    assert stub.process is not None
    contenders = [Contender("direct", stub.url + "/v1", "bench-model", pid=stub.process.pid)]
    nodes: dict[str, Node] = {}
    for name, synchronous, sync_mode, process in (
            ("gateway", "FULL", "commit", True),
            ("gateway_capture_behind", "FULL", "behind", True),
            ("gateway_sync_normal", "NORMAL", "commit", True),
            ("gateway_no_capture_process", "FULL", "commit", False)):
        nodes[name] = Node(workdir / name, stub.url, top={"sqlite_synchronous": synchronous},
                           capture_sync=sync_mode, capture_process=process)
        gateway = nodes[name].gateway().start()
        servers.append(gateway)
        assert gateway.process is not None
        contenders.append(Contender(name, gateway.url + "/v1", "hermes-fed", TOKEN,
                                    gateway.process.pid))
        if process:
            capture_process_of(gateway)
    try:
        if args.litellm_start:
            litellm, contender = start_litellm(args.litellm_start, stub.url, args.litellm_model,
                                               args.litellm_key, workdir)
            servers.append(litellm)
            contenders.append(contender)
        elif args.litellm:
            contenders.append(Contender("litellm", args.litellm, args.litellm_model,
                                        args.litellm_key))
        lat = latency(contenders, args.rounds, args.warmup)
        runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in contenders}
        # Each contender's req/s runs --throughput-runs times, in order then in reverse
        # (ABC CBA ...): drift on a shared machine hits all alike.
        for run in range(args.throughput_runs):
            order = list(enumerate(contenders))
            for offset, contender in order if run % 2 == 0 else order[::-1]:
                node = nodes.get(contender.name)
                before = count_captured(node) if node is not None else 0
                rate = throughput(contender, args.threads, args.seconds,
                                  (run * len(contenders) + offset + 1) * 10_000_000)
                if node is not None:
                    captured = count_captured(node) - before
                    rate["captured"] = captured
                    rate["every_answered_call_captured"] = captured >= rate["requests"]
                runs[contender.name].append(rate)
        rates = {name: {"requests_per_s": float(np.mean([r["requests_per_s"] for r in rs])),
                        "server_cpu_ms_per_request": float(np.mean(
                            [r["server_cpu_ms_per_request"] or np.nan for r in rs])),
                        "every_answered_call_captured": all(
                            r.get("every_answered_call_captured", True) for r in rs),
                        "runs": rs}
                 for name, rs in runs.items()}
        import httpx

        metrics = {name: httpx.get(servers[1 + i].url + "/metrics").text
                   for i, name in enumerate(nodes)}
    finally:
        for server in servers:
            server.stop()
    capture = {"full_one_thread": capture_only(workdir, args.capture_calls // 4, 1, "FULL"),
               "full_threads": capture_only(workdir, args.capture_calls, args.threads, "FULL"),
               "normal_threads": capture_only(workdir, args.capture_calls, args.threads,
                                              "NORMAL")}

    def metric(text: str, name: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return float("nan")

    def capture_figures(text: str) -> dict[str, float]:
        def mean(prefix: str) -> float:
            return metric(text, prefix + "_sum") / metric(text, prefix + "_count")

        return {"group_commits": metric(text, "hermes_gateway_capture_batch_calls_count"),
                "mean_calls_per_commit": mean("hermes_gateway_capture_batch_calls"),
                "mean_commit_ms": 1e3 * mean("hermes_gateway_capture_commit_seconds"),
                "mean_capture_lag_ms": 1e3 * mean("hermes_gateway_capture_lag_seconds")}

    result = {
        "bench": "gateway/bench_gateway",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "config": {k: v for k, v in vars(args).items() if k != "out"} | {
            "contenders": [c.name for c in contenders], "turns_per_conversation": TURNS,
            "store": "sqlite synchronous=FULL (gateway_capture_behind: [gateway] "
                     "capture_sync = 'behind'; gateway_sync_normal: synchronous=NORMAL; "
                     "gateway_no_capture_process: capture_process = false)",
            "redaction": "node default"},
        "latency": lat,
        "throughput": rates,
        "capture_in_process": capture,
        "gateway_capture": {name: capture_figures(text) for name, text in metrics.items()},
        "fsync_ms": fsync_floor(workdir),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    subprocess.run(["rm", "-rf", str(workdir)], check=False)
    return result


if __name__ == "__main__":
    main()
