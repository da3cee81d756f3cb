"""The gateway in front of real vLLM (the CPU build, in a virtualenv of its own).

An adapter is loaded into vLLM by the gateway under its versioned name, a user is routed to
it by the plan's keyed hash, and the call is captured. vLLM comes from ``$HERMES_FED_VLLM_VENV``
or ``./.venv-vllm`` (``scripts/vllm_venv.sh`` makes it); the start follows FIELD_NOTES
(``python -m vllm.entrypoints.openai.api_server``, runtime LoRA updating, a 1 GiB KV cache).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from hermes_fed.serving.plan import PlanArm, TrafficPlan
from hermes_fed.store import Keyring

from .stack import BASE_MODEL, TOKEN, Node, Server, free_port, make_adapter

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
VENV = Path(os.environ.get("HERMES_FED_VLLM_VENV", ROOT / ".venv-vllm"))
VERSION = "v4-vllm"


def _vllm(workdir: Path) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update({"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_CPU_KVCACHE_SPACE": "1",
                "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "VLLM_HOST_IP": "127.0.0.1",
                "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"})
    return Server([str(VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
                   "--model", str(BASE_MODEL), "--served-model-name", "base", "--host",
                   "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len",
                   "512", "--enable-lora", "--max-lora-rank", "16", "--max-loras", "2"],
                  port, workdir / "vllm.log", env=env)


@pytest.fixture(scope="module")
def vllm(workdir: Path) -> Iterator[Server]:
    if not (VENV / "bin" / "python").is_file():
        pytest.skip(f"no vLLM virtualenv at {VENV} (scripts/vllm_venv.sh makes it)")
    server = _vllm(workdir).start(timeout_s=300)
    yield server
    server.stop()


def test_vllm_behind_the_gateway_serves_a_routed_user_the_versioned_adapter(
        workdir: Path, vllm: Server) -> None:
    # Prepare: a plan sending half the users to an adapter; the gateway in front of vLLM
    node = Node(workdir / "vllm-node", vllm.url)
    adapter = make_adapter(workdir / "vllm-adapter", seed=5)
    result = node.cli("plan", "set", "--test", "ab-vllm", "--arm", "control=base:0.5",
                      "--arm", f"treatment={VERSION}:0.5", "--adapter", f"{VERSION}={adapter}")
    assert result.returncode == 0, result.stderr
    gateway = node.gateway().start()
    try:
        secret = Keyring.from_file(node.workdir / "var" / "keyring.json").hmac_secret
        plan = TrafficPlan("ab-vllm", (PlanArm("control", "base", 0.5),
                                       PlanArm("treatment", VERSION, 0.5)), "control")
        user = next(f"user-{i}" for i in range(100)
                    if plan.route(secret, f"user-{i}").arm.version == VERSION)
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN, max_retries=0)

        # Execute
        raw = client.chat.completions.with_raw_response.create(
            model="hermes-fed", user=user, max_tokens=16, temperature=0,
            messages=[{"role": "user", "content": "Say hello"}])
        streamed = list(client.chat.completions.create(
            model="hermes-fed", user=user, max_tokens=16, temperature=0, stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Say hi"}]))
    finally:
        gateway.stop()

    # Assert: vLLM holds the adapter under its version; the call went there and was captured
    listed = {m["id"]: m for m in httpx.get(vllm.url + "/v1/models").json()["data"]}
    assert VERSION in listed and listed[VERSION].get("parent") == "base"
    assert raw.parse().choices[0].message.content is not None
    assert streamed[-1].usage is not None
    store = node.open_store()
    try:
        events = store.read_stream("session-" + raw.headers["x-hermes-trajectory-id"].split("-")[1])
    finally:
        store.close()
    assert [e.type for e in events] == ["SessionStarted", "TrajectoryRecorded"]
    assert (events[0].data["model_version"], events[0].data["variant"]) == (VERSION, "treatment")
