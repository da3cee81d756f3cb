"""The privacy ledger: the epsilon a coordinator has spent, folded from its own log.

The accountant (:class:`hermes_fed.privacy.dp.RdpAccountant`, sampling rate 1: every
node takes part) is rebuilt from the coordinator's log at the start of every run: each
``RoundCompleted`` report carries the DP parameters of its round (invariant P1: the
privacy spent is a fold over the log, so it survives ``round run`` invocations). A round
that would pass ``dp-epsilon-budget`` is refused before anything is sent (invariant P2:
nothing is published for it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coordinator.rounds.dp import PrivacySettings
from hermes_fed.privacy.dp import RdpAccountant

if TYPE_CHECKING:
    from hermes_fed.store import EventStore

ROUND_COMPLETED = "RoundCompleted"


def round_dp(report: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The DP parameters a completed round's report carries, or None (no DP)."""
    privacy = report.get("privacy") or {}
    if privacy.get("dp") in ("server", "client"):
        return privacy
    return None


def accountant_from_log(store: EventStore) -> RdpAccountant:
    """Replay every DP round of the coordinator's log into a fresh accountant (P1)."""
    accountant = RdpAccountant()
    for event in store.read():
        if event.type != ROUND_COMPLETED:
            continue
        dp = round_dp(event.data.get("report") or {})
        if dp is not None:
            accountant.step(float(dp["noise_multiplier"]), float(dp.get("sampling_rate", 1.0)))
    return accountant


def single_round_epsilon(settings: PrivacySettings) -> float:
    """Epsilon of one round alone at ``dp-delta`` (what a round adds, before composition)."""
    return RdpAccountant().epsilon_after(settings.dp_noise_multiplier, 1.0, settings.dp_delta)


@dataclass(frozen=True, slots=True)
class PrivacyLedger:
    """The run's view of privacy spent: the accountant plus the settings it charges."""

    settings: PrivacySettings
    accountant: RdpAccountant

    def refuse_if_exhausted(self, round_number: int) -> None:
        """Raise :class:`PrivacyBudgetExhausted` before a round that would pass the budget."""
        if not self.settings.dp_on or not self.settings.dp_epsilon_budget:
            return
        cfg = self.settings.dp_config()
        after = self.accountant.epsilon_after(cfg.noise_multiplier, 1.0, cfg.delta)
        if after > self.settings.dp_epsilon_budget:
            from hermes_fed.errors import PrivacyBudgetExhausted

            raise PrivacyBudgetExhausted(
                f"privacy budget exhausted: round {round_number} would bring epsilon to "
                f"{after:.3f} > budget {self.settings.dp_epsilon_budget:g} (delta="
                f"{cfg.delta:g}, {self.accountant.rounds} DP rounds already in the "
                "coordinator's log); nothing was sent or published. Raise "
                "--epsilon-budget or --noise-multiplier to continue")

    def charge(self) -> dict[str, Any]:
        """Record one released round; returns its privacy report (None-free JSON)."""
        s = self.settings
        if not s.dp_on:
            return {"dp": "off", "secagg": bool(s.secagg)}
        total = self.accountant.charge(s.dp_config())
        return {"dp": s.dp, "clip_norm": s.dp_clip, "noise_multiplier": s.dp_noise_multiplier,
                "noise_std_on_sum": s.dp_noise_multiplier * s.dp_clip, "delta": s.dp_delta,
                "sampling_rate": 1.0, "epsilon_round": single_round_epsilon(s),
                "epsilon_total": total, "dp_rounds_total": self.accountant.rounds,
                "epsilon_budget": s.dp_epsilon_budget or None, "secagg": bool(s.secagg)}
