"""Simulated users: implicit feedback that follows the outcome, with noise.

A correct answer is usually accepted and the session usually continues; a wrong one is
usually retried, edited or (when the agent broke: a malformed call or a tool error)
reported as an error, and sometimes accepted by mistake. The probabilities are a validated
config; every draw comes from the caller's seeded ``random.Random``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Feedback:
    """What a user did after one answer."""

    accepted: bool
    retry: bool
    edit_ratio: float | None
    error: bool
    continued: bool

    def events(self, trajectory_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The session events (catalog types) of this feedback, in a natural order."""
        out: list[tuple[str, dict[str, Any]]] = []
        if self.error:
            out.append(("ErrorReported", {"trajectory_id": trajectory_id,
                                          "reason": "wrong or broken answer"}))
        if self.edit_ratio is not None:
            out.append(("OutputEdited", {"trajectory_id": trajectory_id,
                                         "edit_ratio": self.edit_ratio}))
        if self.retry:
            out.append(("RetryRequested", {"trajectory_id": trajectory_id}))
        if self.accepted:
            out.append(("OutputAccepted", {"trajectory_id": trajectory_id}))
        if self.continued:
            out.append(("SessionContinued", {"trajectory_id": trajectory_id}))
        return out


def _probability(owner: str, name: str, value: float) -> None:
    if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}.{name} must be a probability in [0, 1], got {value!r}")


@dataclass(frozen=True, slots=True)
class UserModel:
    """Probabilities of each reaction given the outcome (defaults documented in ``help``)."""

    accept_if_correct: float = field(default=0.9, metadata={
        "help": "P(accept | correct); otherwise the user says nothing."})
    retry_if_correct: float = field(default=0.03, metadata={
        "help": "P(retry | correct): noise."})
    continue_if_correct: float = field(default=0.7, metadata={
        "help": "P(the session continues | correct)."})
    accept_if_wrong: float = field(default=0.05, metadata={
        "help": "P(accept | wrong): users miss mistakes."})
    retry_if_wrong: float = field(default=0.5, metadata={"help": "P(retry | wrong)."})
    edit_if_wrong: float = field(default=0.3, metadata={
        "help": "P(edit | wrong, no retry); the edit ratio is uniform in [0.3, 1]."})
    error_if_broken: float = field(default=0.6, metadata={
        "help": "P(error report | broken: no tool call, a malformed one or a tool error)."})
    error_if_wrong: float = field(default=0.1, metadata={
        "help": "P(error report | wrong but well-formed)."})
    continue_if_wrong: float = field(default=0.2, metadata={
        "help": "P(the session continues | wrong)."})

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            _probability("UserModel", name, getattr(self, name))

    def react(self, correct: bool, broken: bool, rng: random.Random, *,
              may_retry: bool = True) -> Feedback:
        """Draw the user's feedback on one answer.

        ``broken`` marks a malformed tool call or a tool error; ``may_retry=False`` is the
        last attempt of a session (the user gives up instead of retrying).
        """
        if correct:
            accepted = rng.random() < self.accept_if_correct
            retry = may_retry and not accepted and rng.random() < self.retry_if_correct / max(
                1e-9, 1 - self.accept_if_correct)
            return Feedback(accepted, retry, None, False,
                            rng.random() < self.continue_if_correct)
        error = rng.random() < (self.error_if_broken if broken else self.error_if_wrong)
        accepted = rng.random() < self.accept_if_wrong
        retry = may_retry and not accepted and rng.random() < self.retry_if_wrong
        edit = None
        if not accepted and not retry and rng.random() < self.edit_if_wrong:
            edit = round(rng.uniform(0.3, 1.0), 3)
        return Feedback(accepted, retry, edit, error, rng.random() < self.continue_if_wrong)
