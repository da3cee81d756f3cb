"""Evaluation: verifiers, held-out log-likelihood, greedy task success."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from hermes_fed.training.config import LoraTrainingConfig
from hermes_fed.training.evaluation import EvalResult, ExampleEval, evaluate
from hermes_fed.training.verifiers import (
    VERIFIERS,
    ArithmeticVerifier,
    Verifier,
    VerifierRegistry,
    safe_arithmetic,
)
from tests.unit.training.tasks import arithmetic_trajectory


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2+3", 5.0),
        ("7 * 6", 42.0),
        ("10/4", 2.5),
        ("-3 - -4", 1.0),
        ("(1+2)*3", 9.0),
    ],
)
def test_safe_arithmetic(expression: str, value: float) -> None:
    assert safe_arithmetic(expression) == value


@pytest.mark.parametrize("expression", ["__import__('os')", "a+1", "2**8", "1/0", "[1]", ""])
def test_safe_arithmetic_refuses(expression: str) -> None:
    with pytest.raises(ValueError):
        safe_arithmetic(expression)


ARITH = arithmetic_trajectory(0)  # some a+b with a tool call
A_PLUS_B = int(ARITH["final_response"].split()[-1].rstrip("."))


@pytest.mark.parametrize(
    ("trajectory", "response", "ok"),
    [
        (ARITH, f"The answer is {A_PLUS_B}.", True),
        (ARITH, f"{A_PLUS_B + 1}", False),
        (ARITH, f"first {A_PLUS_B + 1}, finally {A_PLUS_B}", True),
        (ARITH, "no number here", False),
        ({"task": "What is 12*3?", "messages": []}, "36", True),
        ({"task": "What is 12*3?", "messages": []}, "35.9", False),
        ({"task": "total please", "messages": [], "final_response": "It is 7.5"}, "7.5", True),
        ({"task": "total please", "messages": []}, "7", False),
    ],
)
def test_arithmetic_verifier(trajectory: Mapping[str, Any], response: str, ok: bool) -> None:
    assert ArithmeticVerifier().verify(trajectory, response) is ok


class _Always(Verifier):
    def __init__(self, task_type: str, answer: bool) -> None:
        self.task_type = task_type
        self.answer = answer

    def verify(self, trajectory: Mapping[str, Any], response: str) -> bool:
        return self.answer


def test_registry() -> None:
    registry = VerifierRegistry((_Always("a", True),))
    registry.register(_Always("a", False))
    registry.register(_Always("b", True))
    assert list(registry) == ["a", "b"]
    got = registry.get("a")
    assert got is not None and got.verify({}, "") is False
    assert registry.get("c") is None and "arithmetic" in VERIFIERS
    with pytest.raises(ValueError, match="task_type"):
        registry.register(_Always("", True))


def test_evaluate_base_only_and_with_verifiers(tiny_model_dir: Path) -> None:
    # Prepare: one task type always succeeds, one never, one has no verifier
    def typed(i: int, task_type: str) -> dict[str, Any]:
        return {**arithmetic_trajectory(i, seed=4), "task_type": task_type}

    heldout = [typed(0, "yes"), typed(1, "no"), typed(2, "unverified")]
    registry = VerifierRegistry((_Always("yes", True), _Always("no", False)))
    # Execute
    result = evaluate(
        tiny_model_dir,
        None,
        heldout,
        verifiers=registry,
        max_new_tokens=4,
        config=LoraTrainingConfig(device="cpu"),
    )
    # Assert
    by_type = {e.task_type: e for e in result.examples}
    assert by_type["yes"].base_success is True and by_type["no"].base_success is False
    assert by_type["unverified"].base_success is None
    assert all(e.adapter_loglik is None and e.adapter_success is None for e in result.examples)
    assert all(e.base_loglik < 0 and e.num_tokens > 0 for e in result.examples)
    metrics = result.metrics()
    assert metrics["success_n"] == 2 and metrics["success_rate_base"] == 0.5
    assert "heldout_loglik_adapter" not in metrics


def test_zero_adapter_matches_base(tiny_model_dir: Path) -> None:
    # B = 0 (peft's init) means base + adapter == base, so every delta is exactly 0
    from hermes_fed.training.adapter import adapter_state, build_peft_model, load_base_model

    config = LoraTrainingConfig(r=2, device="cpu")
    zero = adapter_state(build_peft_model(load_base_model(tiny_model_dir)[0], config))
    result = evaluate(
        tiny_model_dir, zero, [arithmetic_trajectory(i) for i in range(3)], config=config, max_new_tokens=2
    )
    assert all(e.adapter_loglik == pytest.approx(e.base_loglik, abs=1e-5) for e in result.examples)
    assert result.metrics()["heldout_loglik_delta"] == pytest.approx(0.0, abs=1e-5)


def test_metrics_are_sufficient_statistics() -> None:
    result = EvalResult(
        (
            ExampleEval("t1", "x", 3, -2.0, -1.0, None, None),
            ExampleEval("t2", "x", 5, -4.0, -1.0, None, None),
        )
    )
    metrics = result.metrics()
    assert metrics["heldout_loglik_delta_sum"] == 4.0
    assert metrics["heldout_loglik_delta_sumsq"] == 10.0
    assert metrics["heldout_loglik_base"] == -3.0 and metrics["heldout_n"] == 2.0
    assert all(isinstance(v, float) for v in metrics.values())


def test_zero_new_tokens_skips_generation(tiny_model_dir: Path) -> None:
    result = evaluate(
        tiny_model_dir,
        None,
        [arithmetic_trajectory(0)],
        max_new_tokens=0,
        config=LoraTrainingConfig(device="cpu"),
    )
    assert result.examples[0].base_success is None
    assert "success_n" not in result.metrics() and result.metrics()["heldout_n"] == 1
