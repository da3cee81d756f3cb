"""The agent loop: tool-call parsing of chat-template text, tool execution, final answer."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from examples.flywheel.agent import AgentConfig, LocalAgent, ToolCall, clean_reply, parse_tool_call
from examples.flywheel.tasks import FAMILIES, family, golden_trajectory
from hermes_fed.training.dataset import to_chat


def _assistant_texts(tokenizer: object, trajectory: dict) -> list[str]:
    """The assistant turns as the model would emit them: rendered, masked, decoded."""
    messages, tools = to_chat(trajectory)
    rendered = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        messages, tools=tools, tokenize=True, return_dict=True,
        return_assistant_tokens_mask=True)
    ids, mask = rendered["input_ids"], rendered["assistant_masks"]
    turns: list[list[int]] = []
    for i, (tok, m) in enumerate(zip(ids, mask, strict=True)):
        if m and (i == 0 or not mask[i - 1]):
            turns.append([])
        if m:
            turns[-1].append(tok)
    return [clean_reply(tokenizer.decode(t, skip_special_tokens=False))  # type: ignore[attr-defined]
            for t in turns]


@pytest.fixture(scope="module")
def agent(tiny_model_dir: Path) -> LocalAgent:
    return LocalAgent(tiny_model_dir, None, config=AgentConfig(temperature=0.0,
                                                                max_call_tokens=12,
                                                                max_answer_tokens=8))


@pytest.mark.parametrize("task_type", sorted(FAMILIES))
def test_golden_assistant_text_parses_to_its_tool_call(agent: LocalAgent, task_type: str
                                                       ) -> None:
    # Prepare
    golden = golden_trajectory(family(task_type).generate(random.Random(5), "acme_parts"), "t-1")
    # Execute
    call_text, final_text = _assistant_texts(agent.tokenizer, golden)
    call = parse_tool_call(call_text)
    # Assert
    expected = golden["messages"][2]["tool_calls"][0]
    assert call == ToolCall(expected["name"], expected["arguments"])
    assert parse_tool_call(final_text) is None
    assert final_text == golden["final_response"]


def test_every_golden_turn_fits_the_agents_default_token_budgets() -> None:
    # A call cut at max_call_tokens is a malformed call: at 48 every unit conversion (up to
    # 53 tokens with the packaged base's tokenizer) and initech's lookups (50) were cut, so
    # those families could never succeed, whatever the model learnt.
    from transformers import AutoTokenizer

    from examples.flywheel import cold_start_trajectories, default_tenants
    from examples.flywheel.base import SHIPPED_BASE

    # Prepare
    tokenizer = AutoTokenizer.from_pretrained(str(SHIPPED_BASE))
    config = AgentConfig()
    longest = {"call": 0, "answer": 0}
    # Execute: the assistant turns exactly as the model emits them (mask of the template)
    for tenant in default_tenants():
        for golden in cold_start_trajectories(tenant.task_types, 40, 1, table=tenant.table):
            messages, tools = to_chat(golden)
            rendered = tokenizer.apply_chat_template(
                messages, tools=tools, tokenize=True, return_dict=True,
                return_assistant_tokens_mask=True)
            mask = rendered["assistant_masks"]
            starts = [i for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1])]
            ends = [i for i, m in enumerate(mask) if m and (i + 1 == len(mask) or not mask[i + 1])]
            call, answer = (e - s + 1 for s, e in zip(starts, ends, strict=True))
            longest["call"] = max(longest["call"], call)
            longest["answer"] = max(longest["answer"], answer)
    # Assert: with room to spare for a near-miss spelling
    assert 48 < longest["call"] <= config.max_call_tokens - 16
    assert longest["answer"] <= config.max_answer_tokens - 8


@pytest.mark.parametrize(("text", "expected"), [
    ('<tool_call>{"name": "calculator", "arguments": {"expression": "1 + 2"}}</tool_call>',
     ToolCall("calculator", {"expression": "1 + 2"})),
    ('I will call. <tool_call>{"name": "lookup", "arguments": {}}</tool_call> and more',
     ToolCall("lookup", {})),
    ("The answer is 3.", None),
    ('<tool_call>{"name": "calculator", "arguments": {"expression": </tool_call>', False),
    ('<tool_call>{"name": "calculator", "arguments": "1+2"}</tool_call>', False),
    ('<tool_call>{"name": 7, "arguments": {}}</tool_call>', False),
    ('<tool_call>{"name": "calculator", "arguments": {}}', False),
    ("<tool_call>[1, 2]</tool_call>", False),
])
def test_parse_tool_call_table(text: str, expected: object) -> None:
    # Execute / Assert
    assert parse_tool_call(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("The answer is 3.<|im_end|>\n<|im_start|>user", "The answer is 3."),
    ("  hi <|endoftext|>", "hi"),
    ("no marker", "no marker"),
    ("<|pad|><|pad|>", ""),
])
def test_clean_reply_cuts_at_the_end_marker(text: str, expected: str) -> None:
    assert clean_reply(text) == expected


class _ScriptedAgent(LocalAgent):
    """The real agent loop with model replies taken from golden trajectories' rendering."""

    def __init__(self, base: LocalAgent, replies: list[list[str]]) -> None:
        # Free calls, so every reply (calls too) comes from the script, whatever the tokenizer.
        self.config = dataclasses.replace(base.config, constrained_calls=False)
        self.tokenizer, self.model = base.tokenizer, base.model
        self.replies = replies
        self.prompts: list[list[int]] = []

    def generate(self, prompts: Sequence[list[int]], max_new_tokens: int, seed: int
                 ) -> list[str]:
        self.prompts.extend(prompts)
        return self.replies.pop(0)


def test_agent_loop_executes_the_parsed_call_and_feeds_the_result_back(agent: LocalAgent
                                                                       ) -> None:
    # Prepare: one correct golden, one with a tool error, one without a tool call
    rng = random.Random(11)
    good = family("arithmetic").generate(rng, "acme_parts")
    date = family("date_arithmetic").generate(rng, "acme_parts")
    plain = family("unit_conversion").generate(rng, "acme_parts")
    call_text, final_text = _assistant_texts(agent.tokenizer, golden_trajectory(good, "t-1"))
    bad_call = '<tool_call>{"name": "date_add", "arguments": {"date": "soon", "days": 3}}' \
               "</tool_call>"
    scripted = _ScriptedAgent(agent, [[call_text, bad_call, "I think 12."],
                                      [final_text, "Sorry."]])
    # Execute
    outcomes = scripted.solve([(good, good.request + " Thanks, Maria Lopez."),
                               (date, date.request), (plain, plain.request)], seed=0)
    # Assert
    first, second, third = outcomes
    assert first.correct and first.tool_call is not None and not first.tool_error
    assert json.loads(first.messages[3]["content"]) == {"result": good.answer}
    assert first.final_response == final_text
    assert second.tool_error and not second.correct
    assert "error" in json.loads(second.messages[3]["content"])
    assert third.tool_call is None and not third.malformed_call and not third.correct
    assert [m["role"] for m in third.messages] == ["system", "user", "assistant"]
    # The second-turn prompt holds the executed tool result.
    second_turn = agent.tokenizer.decode(scripted.prompts[3])
    assert f'{{"result": {int(good.answer)}}}' in second_turn


def test_real_sampling_is_seeded(tiny_model_dir: Path) -> None:
    # Prepare
    sampler = LocalAgent(tiny_model_dir, None, config=AgentConfig(temperature=1.0,
                                                                  max_call_tokens=10,
                                                                  max_answer_tokens=6))
    rng = random.Random(3)
    tasks = [(x, x.request) for x in (family(t).generate(rng, "acme_parts")
                                      for t in sorted(FAMILIES))]
    # Execute
    a = sampler.solve(tasks, seed=7)
    b = sampler.solve(tasks, seed=7)
    c = sampler.solve(tasks, seed=8)
    # Assert
    assert [o.messages for o in a] == [o.messages for o in b]
    assert [o.messages for o in a] != [o.messages for o in c]
    assert all(o.messages[1]["content"] == t[1] for o, t in zip(a, tasks, strict=True))


@pytest.mark.parametrize(("field", "value"), [("temperature", -1.0), ("batch_size", 0),
                                              ("max_call_tokens", 1.5)])
def test_agent_config_refuses_bad_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"AgentConfig.{field}"):
        AgentConfig(**{field: value})


def test_evaluate_measures_task_success_of_every_family(tiny_model_dir: Path) -> None:
    # Prepare: importing examples.flywheel.tasks registered the families' verifiers
    from examples.flywheel.coldstart import cold_start_trajectories
    from hermes_fed.training.evaluation import evaluate

    golden = cold_start_trajectories(sorted(FAMILIES), 1, seed=0)
    # Execute
    metrics = evaluate(tiny_model_dir, None, golden, max_new_tokens=4).metrics()
    # Assert: every family is judged (a random model solves none of them)
    assert metrics["success_n"] == len(FAMILIES)
    assert metrics["success_rate_base"] == 0.0
