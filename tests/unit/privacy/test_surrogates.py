"""Surrogates: each placeholder becomes one made-up value of its type, the same one for
every occurrence in a trajectory, and the training text carries them."""

from __future__ import annotations

import re

from hermes_fed.privacy.surrogates import FIRST, LAST, SurrogateMap, with_surrogates


def _trajectory() -> dict[str, object]:
    return {
        "trajectory_id": "t-1", "task": "Add 3 and 4. Thanks, <PERSON_1>.", "task_type": "arithmetic",
        "messages": [
            {"role": "user", "content": "Add 3 and 4. Thanks, <PERSON_1>. Mail <EMAIL_ADDRESS_1>, "
                                        "not <EMAIL_ADDRESS_2>; key <API_KEY_1>"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "name": "send", "arguments": {"to": "<EMAIL_ADDRESS_1>",
                                                           "cc": ["<PERSON_1>"], "n": 3}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sent to <EMAIL_ADDRESS_1>"},
            {"role": "assistant", "content": "Done, <PERSON_1>: 7"}],
        "tools": [{"name": "send", "description": "<PERSON_1> stays in a schema"}],
        "final_response": "Done, <PERSON_1>: 7",
    }


def test_each_placeholder_gets_one_value_of_its_type_everywhere_in_the_trajectory() -> None:
    # Execute
    out = with_surrogates(_trajectory())
    # Assert: names from the pools, documentation-domain mail, secrets left as placeholders
    user = out["messages"][0]["content"]
    name = re.search(r"Thanks, ([A-Za-z]+ [A-Za-z]+)\.", user)
    assert name is not None
    first, last = name.group(1).split()
    assert first in FIRST and last in LAST
    mails = re.findall(r"[a-z]+\.[a-z]+@example\.(?:com|org|net)", user)
    assert len(mails) == 2 and mails[0] != mails[1]  # two placeholders, two values
    assert "<API_KEY_1>" in user
    # the same placeholder is the same value in the task, tool arguments, results and answer
    call = out["messages"][1]["tool_calls"][0]["arguments"]
    assert call == {"to": mails[0], "cc": [name.group(1)], "n": 3}
    assert out["messages"][2]["content"] == f"sent to {mails[0]}"
    assert out["final_response"] == out["messages"][3]["content"] == f"Done, {name.group(1)}: 7"
    assert out["task"] == f"Add 3 and 4. Thanks, {name.group(1)}."
    # ids, tools and the input are left alone
    assert out["tools"] == _trajectory()["tools"] and out["trajectory_id"] == "t-1"
    assert "<PERSON_1>" in str(_trajectory()["messages"])


def test_surrogates_are_a_function_of_the_trajectory_id() -> None:
    a = [SurrogateMap("t-1").text("<PERSON_1> <PHONE_NUMBER_1>") for _ in range(2)]
    b = SurrogateMap("t-2").text("<PERSON_1> <PHONE_NUMBER_1>")
    assert a[0] == a[1]
    assert re.fullmatch(r"[A-Za-z]+ [A-Za-z]+ \+1 \d{3}-555-01\d\d", a[0]), a[0]
    assert SurrogateMap("t-1").text("no placeholders <here>") == "no placeholders <here>"
    assert b != a[0] or SurrogateMap("t-3").text("<PERSON_1> <PHONE_NUMBER_1>") != a[0]


def test_the_training_text_carries_surrogates_unless_turned_off(tmp_path: object) -> None:
    from examples.flywheel.base import shipped_base
    from hermes_fed.training.adapter import load_base_model
    from hermes_fed.training.dataset import tokenize_trajectory

    _, tokenizer = load_base_model(shipped_base(), "cpu")
    trajectory = _trajectory()
    on = tokenizer.decode(list(tokenize_trajectory(tokenizer, trajectory, max_length=512).input_ids))
    off = tokenizer.decode(list(tokenize_trajectory(tokenizer, trajectory, max_length=512,
                                                    surrogates=False).input_ids))
    assert "Done, <PERSON_1>" in off and "Done, <PERSON_1>" not in on and "Done, " in on
    assert "@example." in on and "<API_KEY_1>" in on
