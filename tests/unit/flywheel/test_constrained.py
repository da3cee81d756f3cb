"""Schema-constrained tool calls: the forced scaffold is the template's, the calls parse."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from examples.flywheel.agent import AgentConfig, LocalAgent, ToolCall, parse_tool_call
from examples.flywheel.constrained import LITERAL, call_program, fits_tokenizer
from examples.flywheel.tasks import FAMILIES, SYSTEM_PROMPT, family, golden_trajectory
from hermes_fed.training.dataset import to_chat


@pytest.fixture(scope="module")
def shipped() -> LocalAgent:
    """The packaged base: its copy-friendly tokenizer is the one the scaffold fits."""
    from examples.flywheel.base import SHIPPED_BASE

    return LocalAgent(SHIPPED_BASE, None, config=AgentConfig(temperature=1.0))


def _template_call_tokens(tokenizer: object, golden: dict) -> list[int]:
    """The tokens of the golden's call turn as the chat template renders and masks it."""
    messages, tools = to_chat(golden)
    rendered = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        messages, tools=tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = rendered["input_ids"], rendered["assistant_masks"]
    start = mask.index(1)
    end = next(i for i in range(start, len(mask)) if not mask[i])
    return list(ids[start:end])


@pytest.mark.parametrize("task_type", sorted(FAMILIES))
def test_forced_scaffold_and_golden_values_give_the_template_tokens(
        shipped: LocalAgent, task_type: str) -> None:
    # Prepare: a golden call of the family, its values as the tokenizer encodes them
    fam = family(task_type)
    for seed in range(5):
        instance = fam.generate(random.Random(seed), "initech_prices")
        golden = golden_trajectory(instance, f"t-{seed}")
        program = call_program(shipped.tokenizer, fam.tool_schema)
        values = iter(str(v) for v in instance.arguments.values())
        # Execute: the scaffold's literal tokens with the values' own tokens between them
        tokens: list[int] = []
        for segment in program:
            if segment.kind == LITERAL:
                tokens.extend(segment.tokens)
            else:
                tokens.extend(shipped.tokenizer(next(values), add_special_tokens=False)["input_ids"])
        # Assert: exactly what the model was trained on
        assert tokens == _template_call_tokens(shipped.tokenizer, golden)
    assert fits_tokenizer(shipped.tokenizer, fam.tool_schema)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_constrained_call_parses_to_the_tool_its_keys_and_types(
        shipped: LocalAgent, seed: int) -> None:
    # Prepare: sampling at T=1 from the untrained base, which misspells tools when free
    rng = random.Random(seed)
    tasks = [family(t).generate(rng, "acme_parts") for t in sorted(FAMILIES) for _ in range(4)]
    messages = [[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": x.request}]
                for x in tasks]
    tools = [family(x.task_type).tool_schema for x in tasks]
    prompts = [shipped.prompt_ids(m, [t]) for m, t in zip(messages, tools, strict=True)]
    # Execute
    replies = shipped.generate_calls(prompts, tools, seed)
    # Assert
    for reply, tool in zip(replies, tools, strict=True):
        call = parse_tool_call(reply)
        assert isinstance(call, ToolCall), reply
        properties = tool["parameters"]["properties"]
        assert call.name == tool["name"] and list(call.arguments) == list(properties)
        for key, spec in properties.items():
            kind = (int, float) if spec["type"] in ("number", "integer") else str
            assert isinstance(call.arguments[key], kind) and not isinstance(call.arguments[key], bool)


def test_the_same_seed_gives_the_same_calls(shipped: LocalAgent) -> None:
    tasks = [family("unit_conversion").generate(random.Random(i), "t") for i in range(6)]
    tools = [family("unit_conversion").tool_schema] * len(tasks)
    prompts = [shipped.prompt_ids([{"role": "user", "content": x.request}], tools[:1]) for x in tasks]
    assert shipped.generate_calls(prompts, tools, 3) == shipped.generate_calls(prompts, tools, 3)
    assert shipped.generate_calls(prompts, tools, 3) != shipped.generate_calls(prompts, tools, 4)


def test_a_tokenizer_that_glues_spaces_to_values_falls_back_to_free_sampling(
        tiny_model_dir: Path) -> None:
    # Prepare: the GPT-2 style tokenizer of a plain tiny model (" 292" is one piece)
    constrained = LocalAgent(tiny_model_dir, None, config=AgentConfig(temperature=0.0))
    free = LocalAgent(tiny_model_dir, None, config=AgentConfig(temperature=0.0,
                                                               constrained_calls=False))
    tasks = [(family("unit_conversion").generate(random.Random(i), "t"), "") for i in range(3)]
    tasks = [(x, x.request) for x, _ in tasks]
    # Execute + Assert
    assert not fits_tokenizer(constrained.tokenizer, family("unit_conversion").tool_schema)
    assert constrained.solve(tasks, 5) == free.solve(tasks, 5)
