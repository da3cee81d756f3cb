"""Real vLLM (the CPU build) serving the packaged base and our adapters by versioned name.

One server for the module (30-80 s to start on 2 shared cores). Every answer is checked against
an independent reference: transformers (the base) and peft (base + adapter) in this
process, teacher-forced on the tokens vLLM chose. Chat calls go through the official
``openai`` client; vLLM's adapter endpoints through httpx.

The vLLM virtualenv is made by ``scripts/vllm_venv.sh`` (the README's test command runs
it); without it these tests fail, they do not skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from hermes_fed.serving.vllm_process import VllmServer
from tests.serving_procs import (
    BASE_SERVED_NAME,
    TestAdapter,
    packaged_base_model,
    vllm_server,
    vllm_venv_problem,
    write_test_adapter,
)

pytestmark = pytest.mark.slow

PROMPTS = [
    [{"role": "user", "content": "What is the weather in Paris?"}],
    [{"role": "system", "content": "You are a helpful assistant with tools."},
     {"role": "user", "content": "Please look up order 42 for me."}],
]
MAX_TOKENS = 16
# fp32 on both sides; vLLM's CPU kernels sum in another order than torch's.
LOGPROB_ATOL = 2e-3
ARGMAX_SLACK = 1e-3


@dataclass(frozen=True, slots=True)
class Completion:
    prompt_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str


@pytest.fixture(scope="module")
def base_dir() -> Path:
    return packaged_base_model()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, base_dir: Path) -> Iterator[VllmServer]:
    problem = vllm_venv_problem()
    if problem is not None:
        pytest.fail(problem)
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    with vllm_server(base_dir, log) as running:
        yield running


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory, base_dir: Path) -> list[TestAdapter]:
    root = tmp_path_factory.mktemp("adapters")
    # B ~ N(0, 0.5): against the packaged base's confident greedy answers, B ~ N(0, 0.1) left
    # the answer of some seeds unchanged (2 of 6 on one prompt, 4 of 6 on the other); from
    # 0.3 up every seed changes both answers and no two agree.
    return [write_test_adapter(root, base_dir, seed=seed, version=seed + 1, b_scale=0.5)
            for seed in range(6)]


@pytest.fixture(scope="module")
def client(server: VllmServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def admin(server: VllmServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


class Reference:
    """transformers + peft on the same base: log-probabilities of given continuations."""

    def __init__(self, base_dir: Path) -> None:
        from hermes_fed.training.adapter import load_base_model

        self.model, self.tokenizer = load_base_model(base_dir)
        self.model.eval()
        self._peft: Any = None

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"]
        return [int(i) for i in ids]

    def log_softmax(self, prompt: list[int], continuation: list[int],
                    adapter: TestAdapter | None) -> np.ndarray:
        """log p(. | prompt + continuation[:j]) for each j, shape (len(continuation), vocab)."""
        import torch
        from peft import PeftModel

        ids = torch.tensor([prompt + continuation])
        with torch.no_grad():
            if adapter is None:
                model = self._peft if self._peft is not None else self.model
                if self._peft is not None:
                    with self._peft.disable_adapter():
                        logits = model(input_ids=ids).logits
                else:
                    logits = model(input_ids=ids).logits
            else:
                if self._peft is None:
                    self._peft = PeftModel.from_pretrained(self.model, str(adapter.path),
                                                           adapter_name=adapter.name)
                elif adapter.name not in self._peft.peft_config:
                    self._peft.load_adapter(str(adapter.path), adapter_name=adapter.name)
                self._peft.set_adapter(adapter.name)
                logits = self._peft(input_ids=ids).logits
        steps = logits[0, len(prompt) - 1: len(prompt) + len(continuation) - 1]
        return torch.log_softmax(steps.double(), dim=-1).numpy()


@pytest.fixture(scope="module")
def reference(base_dir: Path) -> Reference:
    return Reference(base_dir)


def chat(client: openai.OpenAI, model: str, messages: list[dict[str, str]]) -> Completion:
    response = client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=MAX_TOKENS,  # type: ignore[arg-type]
        logprobs=True, extra_body={"return_token_ids": True})
    choice = response.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    return Completion(
        prompt_ids=list((response.model_extra or {})["prompt_token_ids"]),
        token_ids=list((choice.model_extra or {})["token_ids"]),
        logprobs=[item.logprob for item in choice.logprobs.content],
        text=choice.message.content or "", finish_reason=choice.finish_reason)


def load(admin: httpx.Client, adapter: TestAdapter, name: str | None = None) -> httpx.Response:
    return admin.post("/v1/load_lora_adapter",
                      json={"lora_name": name or adapter.name, "lora_path": str(adapter.path)})


def assert_greedy_under(reference: Reference, got: Completion, adapter: TestAdapter | None) -> None:
    """Every token vLLM chose is the reference's argmax, with the reference's log-probability."""
    logp = reference.log_softmax(got.prompt_ids, got.token_ids, adapter)
    chosen = logp[np.arange(len(got.token_ids)), got.token_ids]
    assert np.all(chosen >= logp.max(axis=1) - ARGMAX_SLACK), (
        f"vLLM's tokens {got.token_ids} are not greedy under the reference: "
        f"chosen {chosen.round(4).tolist()}, best {logp.max(axis=1).round(4).tolist()}")
    np.testing.assert_allclose(got.logprobs, chosen, atol=LOGPROB_ATOL)


def served_models(client: openai.OpenAI) -> dict[str, dict[str, Any]]:
    return {m.id: m.model_dump() for m in client.models.list()}


# --- the base ---------------------------------------------------------------------------
def test_models_lists_the_base_under_its_served_name(client: openai.OpenAI, base_dir: Path) -> None:
    # Execute
    models = served_models(client)

    # Assert
    assert models[BASE_SERVED_NAME]["root"] == str(base_dir)
    assert models[BASE_SERVED_NAME]["parent"] is None
    assert models[BASE_SERVED_NAME]["max_model_len"] == 512


@pytest.mark.parametrize("messages", PROMPTS, ids=["user", "system+user"])
def test_base_answers_greedily_as_transformers_does(client: openai.OpenAI, reference: Reference,
                                                    messages: list[dict[str, str]]) -> None:
    # Execute
    got = chat(client, BASE_SERVED_NAME, messages)

    # Assert: vLLM rendered the chat template as transformers does, and decoded greedily
    assert got.prompt_ids == reference.prompt_ids(messages)
    assert got.token_ids and got.finish_reason in ("stop", "length")
    assert_greedy_under(reference, got, adapter=None)


# --- adapters by versioned name ---------------------------------------------------------
@pytest.mark.parametrize("messages", PROMPTS, ids=["user", "system+user"])
def test_loaded_adapter_answers_as_peft_does_and_unlike_the_base(
        client: openai.OpenAI, admin: httpx.Client, reference: Reference, adapters: list[TestAdapter],
        messages: list[dict[str, str]]) -> None:
    # Prepare
    adapter = adapters[0]
    if adapter.name not in served_models(client):
        assert load(admin, adapter).status_code == 200

    # Execute
    tuned = chat(client, adapter.name, messages)
    base = chat(client, BASE_SERVED_NAME, messages)

    # Assert
    assert_greedy_under(reference, tuned, adapter)
    assert tuned.token_ids != base.token_ids


def test_load_lists_the_adapter_under_its_name_with_the_base_as_parent(
        client: openai.OpenAI, admin: httpx.Client, adapters: list[TestAdapter]) -> None:
    # Prepare
    adapter = adapters[1]

    # Execute
    response = load(admin, adapter)

    # Assert: vLLM answers 200 with a plain-text line, not JSON
    assert response.status_code == 200, response.text
    assert adapter.name in response.text
    listed = served_models(client)[adapter.name]
    assert listed["parent"] == BASE_SERVED_NAME
    assert listed["root"] == str(adapter.path)


def test_loading_a_loaded_name_again_is_refused_and_the_first_stays(
        client: openai.OpenAI, admin: httpx.Client, reference: Reference,
        adapters: list[TestAdapter]) -> None:
    # Prepare
    first, other = adapters[2], adapters[3]
    assert load(admin, first).status_code == 200
    before = chat(client, first.name, PROMPTS[0])

    # Execute: the same name, other weights (vLLM would reuse stale prefix-cache blocks
    # with load_inplace, issue #42125: the gateway never reloads a name)
    response = load(admin, other, name=first.name)

    # Assert
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "InvalidUserInput"
    assert "already been loaded" in error["message"]
    after = chat(client, first.name, PROMPTS[0])
    assert after.token_ids == before.token_ids
    assert_greedy_under(reference, after, first)


def test_unload_removes_the_name_and_a_second_unload_is_not_found(
        client: openai.OpenAI, admin: httpx.Client, adapters: list[TestAdapter]) -> None:
    # Prepare
    adapter = adapters[1]
    if adapter.name not in served_models(client):
        assert load(admin, adapter).status_code == 200

    # Execute
    first = admin.post("/v1/unload_lora_adapter", json={"lora_name": adapter.name})
    second = admin.post("/v1/unload_lora_adapter", json={"lora_name": adapter.name})

    # Assert
    assert first.status_code == 200, first.text
    assert second.status_code == 404
    assert second.json()["error"]["type"] == "NotFoundError"
    assert adapter.name not in served_models(client)
    with pytest.raises(openai.NotFoundError):
        chat(client, adapter.name, PROMPTS[0])


def test_loading_a_missing_directory_is_not_found_and_lists_nothing(
        client: openai.OpenAI, admin: httpx.Client, tmp_path: Path) -> None:
    # Execute
    response = admin.post("/v1/load_lora_adapter",
                          json={"lora_name": "v9-missing", "lora_path": str(tmp_path / "nowhere")})

    # Assert
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "NotFoundError"
    assert "v9-missing" not in served_models(client)


def test_streaming_yields_the_same_answer_and_a_usage_chunk(
        client: openai.OpenAI, admin: httpx.Client, adapters: list[TestAdapter]) -> None:
    # Prepare
    adapter = adapters[0]
    if adapter.name not in served_models(client):
        assert load(admin, adapter).status_code == 200
    whole = chat(client, adapter.name, PROMPTS[0])

    # Execute
    stream = client.chat.completions.create(
        model=adapter.name, messages=PROMPTS[0], temperature=0, max_tokens=MAX_TOKENS,  # type: ignore[arg-type]
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)

    # Assert: the deltas add up to the non-streamed answer; the last chunk carries usage only
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.text
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(whole.token_ids)
    assert chunks[-1].usage.prompt_tokens == len(whole.prompt_ids)
    assert {c.model for c in chunks} == {adapter.name}


def test_more_adapters_than_max_loras_each_answer_as_peft_does(
        client: openai.OpenAI, admin: httpx.Client, reference: Reference,
        adapters: list[TestAdapter]) -> None:
    # Prepare: --max-loras 2 slots; three more names make vLLM swap weights in and out
    trio = adapters[3:6]
    for adapter in trio:
        assert load(admin, adapter).status_code == 200

    # Execute: round-robin twice, so every call needs an adapter another call evicted
    answers = [(adapter, chat(client, adapter.name, PROMPTS[1])) for _ in range(2) for adapter in trio]

    # Assert
    for adapter, got in answers:
        assert_greedy_under(reference, got, adapter)
    assert len({tuple(got.token_ids) for _, got in answers}) == 3


def test_an_adapter_above_max_lora_rank_is_refused_and_the_server_keeps_serving(
        tmp_path: Path, client: openai.OpenAI, admin: httpx.Client, base_dir: Path) -> None:
    # Prepare: rank 32 > --max-lora-rank 16
    wide = write_test_adapter(tmp_path, base_dir, seed=9, r=32, version=9)

    # Execute
    response = load(admin, wide)

    # Assert: vLLM answers 500 (not a 4xx: the worker raised), names the cause, lists nothing
    assert response.status_code == 500
    assert "greater than max_lora_rank" in response.json()["error"]["message"]
    assert wide.name not in served_models(client)
    assert chat(client, BASE_SERVED_NAME, PROMPTS[0]).token_ids
