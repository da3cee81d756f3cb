"""SHIP / ROLLBACK / CONTINUE for a cross-tenant A/B test, with guardrails and its numbers.

Called once per look (every round) with each tenant's cumulative arms. Rules, in order:

1. **SRM** (any tenant, or overall) -> ROLLBACK: assignment or logging is broken, so no
   estimate can be trusted; go back to the known-good version and investigate.
2. **Harm guardrail** -> ROLLBACK: an analysed tenant (>= ``min_samples_per_arm`` per arm) whose
   lift is negative with Holm-adjusted always-valid p < ``alpha``. Per-tenant p-values are
   mSPRT p-values ``1/Λ`` at this look (`sequential`; valid at any look, and conservative
   next to the running minimum, so no per-tenant state is carried) so that checking every
   round does not inflate false alarms, and Holm's step-down (Holm 1979) controls the
   family-wise error: with no tenant harmed, the chance that *any* of ``k`` tenants trips
   the guardrail is <= ``alpha`` under arbitrary dependence. FWER, not FDR, is the right
   target: one false alarm is a rollback.
3. No tenant with ``min_samples_per_arm`` units in each arm, or fewer than
   ``min_total_per_arm`` in an arm summed over the analysed tenants -> CONTINUE (ROLLBACK,
   inconclusive, at or past ``max_duration_days``: a test does not outlive its planned end
   for want of traffic). A tenant
   below the per-tenant floor is named in the reasons and left out of the estimate and
   the guardrail until it reaches the floor: it does not block the others. (It used to:
   one long-tail tenant that never reaches 30 users per arm then stopped every test of
   every tenant forever, which the demo's small tenant showed. Its own guardrail cannot
   protect it at that size anyway: a significance test on 10 users has no power.)
4. A look of the sequential test on the meta-analysed lift (`meta`: DerSimonian–Laird random
   effects from ``random_effects_min_tenants`` analysed tenants, the fixed effect below).
   Lifts are relative (treatment/control - 1) only while every control mean is at least
   ``relative_min_control`` and precise (Fieller's g <= ``relative_max_g``), else absolute
   differences; a test on the absolute scale stays there. Significantly negative ->
   ROLLBACK at once.
5. Before ``min_duration_days`` -> CONTINUE (novelty effects, weekly cycles).
6. Significantly positive and estimate >= ``min_lift`` -> SHIP. Confidence sequence entirely
   below ``min_lift`` -> ROLLBACK (futility: the lift cannot reach the bar).
7. At or past ``max_duration_days`` without a conclusion -> ROLLBACK (inconclusive).
8. Otherwise CONTINUE.

``Decision.numbers["rule"]`` names the rule that gave the verdict: ``srm``, ``harm``,
``worse`` (rule 4), ``ship``, ``futility``, ``inconclusive`` (rule 7, or no tenant analysed
by the planned end) or ``continue``.

Defaults (>= 30 per arm per tenant, alpha 0.05, ship at >= +2% lift) come from the
original product brief.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from statistics import NormalDist
from typing import Any

from hermes_fed.abtest.arms import TenantArms
from hermes_fed.abtest.cuped import cuped_adjust
from hermes_fed.abtest.meta import MetaResult, TenantEffect, combine_effects
from hermes_fed.abtest.sequential import SequentialState, msprt_log_likelihood_ratio, msprt_update
from hermes_fed.abtest.srm import SRMReport, SRMResult, check_srm
from hermes_fed.abtest.welch import WelchResult, welch_test
from hermes_fed.errors import ConfigError

__all__ = ["Decision", "DecisionConfig", "Verdict", "decide", "holm_adjust"]


class Verdict(StrEnum):
    SHIP = "SHIP"
    ROLLBACK = "ROLLBACK"
    CONTINUE = "CONTINUE"


def _unit(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ConfigError(f"DecisionConfig.{name} must be in (0, 1), got {value!r}")


@dataclass(frozen=True, slots=True)
class DecisionConfig:
    """Thresholds of the decision; every default is documented in ``help``.

    From an ``ABTestCreated`` event: ``min_samples`` -> ``min_total_per_arm``,
    ``duration_days`` -> ``max_duration_days``, and ``treatment_share`` is the treatment
    arm's share of the units *in the test* (``traffic_split`` when the node's assignment
    gives treatment weight ``traffic_split`` and control ``1 - traffic_split``; 0.5 when the
    test's users are split evenly).
    """

    alpha: float = field(
        default=0.05,
        metadata={"help": "Level of the sequential test and of the harm guardrail (FWER)."},
    )
    min_samples_per_arm: int = field(
        default=30, metadata={"help": "Units needed in each arm of each tenant to decide."}
    )
    min_total_per_arm: int = field(
        default=0,
        metadata={"help": "Units needed in each arm summed over tenants (ABTestCreated.min_samples)."},
    )
    min_lift: float = field(
        default=0.02,
        metadata={"help": "Relative lift (treatment/control - 1) the estimate must reach to SHIP."},
    )
    min_absolute_effect: float = field(
        default=0.0,
        metadata={"help": "Difference needed to SHIP when lifts are absolute (see relative_min_control)."},
    )
    relative_min_control: float = field(
        default=0.1,
        metadata={
            "help": "Lifts are relative only when every analysed tenant's control mean is at least "
            "this; otherwise absolute differences (quality scores live on [-1, 1]: a control mean "
            "of 0.03 turned a 0.02 drop into a -50% 'lift')."
        },
    )
    relative_max_g: float = field(
        default=0.05,
        metadata={
            "help": "Lifts are relative only when every analysed tenant's control mean is also "
            "precise: Fieller's g = (z * se / mean)^2 at most this (Fieller 1954; above ~0.05 the "
            "delta-method variance of a ratio is far too wide or too narrow). A test that has "
            "looked on the absolute scale stays on it."
        },
    )
    treatment_share: float = field(
        default=0.5,
        metadata={"help": "Configured share of test units assigned to treatment (for SRM)."},
    )
    srm_alpha: float = field(
        default=0.001,
        metadata={"help": "SRM chi-square threshold (Fabijan et al. 2019); Bonferroni per tenant."},
    )
    srm_sequential: bool = field(
        default=True,
        metadata={"help": "Flag SRM on the anytime-valid p (True) or the one-look chi-square."},
    )
    min_duration_days: float = field(
        default=7.0, metadata={"help": "No SHIP or futility stop before this (a weekly cycle)."}
    )
    max_duration_days: float | None = field(
        default=14.0,
        metadata={"help": "Planned end: still inconclusive here -> ROLLBACK; None = no end."},
    )
    mixture_sd: float = field(
        default=0.05,
        metadata={"help": "mSPRT mixing sd tau for relative lifts (5% relative lift)."},
    )
    mixture_sd_absolute: float = field(
        default=0.1,
        metadata={
            "help": "mSPRT mixing sd tau for absolute differences of the [-1, 1] quality score. "
            "They are tested when control means are low or imprecise, i.e. at a few hundred "
            "users, where only effects of ~0.1 (a third of a user's sd) can be resolved; at 0.05 "
            "the demo's +0.16 at 50 users an arm shipped 74% of the time, at 0.1 84%; a +0.01 "
            "at ~2,800 an arm in each of 5 tenants 92% and 89% (the level holds for any tau)."
        },
    )
    random_effects: bool = field(
        default=True,
        metadata={"help": "Test the DerSimonian-Laird estimate (True) or the fixed effect."},
    )
    random_effects_min_tenants: int = field(
        default=3,
        metadata={
            "help": "Fewest analysed tenants for the random-effects estimate: with fewer, the "
            "between-tenant variance rests on one degree of freedom, and the common (fixed) "
            "effect is tested; each tenant is still guarded against harm (rule 2)."
        },
    )
    use_cuped: bool = field(
        default=True,
        metadata={"help": "CUPED-adjust tenants whose arms carry pre-period covariate sums."},
    )

    def __post_init__(self) -> None:
        _unit("alpha", self.alpha)
        _unit("treatment_share", self.treatment_share)
        _unit("srm_alpha", self.srm_alpha)
        if isinstance(self.min_samples_per_arm, bool) or self.min_samples_per_arm < 2:
            raise ConfigError(
                f"DecisionConfig.min_samples_per_arm must be an int >= 2, got {self.min_samples_per_arm!r}"
            )
        if isinstance(self.min_total_per_arm, bool) or self.min_total_per_arm < 0:
            raise ConfigError(
                f"DecisionConfig.min_total_per_arm must be an int >= 0, got {self.min_total_per_arm!r}"
            )
        if not (math.isfinite(self.min_lift) and self.min_lift >= 0.0):
            raise ConfigError(f"DecisionConfig.min_lift must be >= 0, got {self.min_lift!r}")
        if not (math.isfinite(self.min_absolute_effect) and self.min_absolute_effect >= 0.0):
            raise ConfigError(
                f"DecisionConfig.min_absolute_effect must be >= 0, got {self.min_absolute_effect!r}"
            )
        if not (math.isfinite(self.relative_min_control) and self.relative_min_control > 0.0):
            raise ConfigError(
                f"DecisionConfig.relative_min_control must be > 0, got {self.relative_min_control!r}"
            )
        if not (math.isfinite(self.min_duration_days) and self.min_duration_days >= 0.0):
            raise ConfigError(
                f"DecisionConfig.min_duration_days must be >= 0, got {self.min_duration_days!r}"
            )
        if self.max_duration_days is not None and not (
            math.isfinite(self.max_duration_days) and self.max_duration_days >= self.min_duration_days
        ):
            raise ConfigError(
                "DecisionConfig.max_duration_days must be >= min_duration_days "
                f"({self.min_duration_days!r}) or None, got {self.max_duration_days!r}"
            )
        if not (math.isfinite(self.mixture_sd) and self.mixture_sd > 0.0):
            raise ConfigError(f"DecisionConfig.mixture_sd must be > 0, got {self.mixture_sd!r}")
        if not (math.isfinite(self.mixture_sd_absolute) and self.mixture_sd_absolute > 0.0):
            raise ConfigError(
                f"DecisionConfig.mixture_sd_absolute must be > 0, got {self.mixture_sd_absolute!r}"
            )
        if not self.relative_max_g > 0.0:  # inf: never on precision (NaN fails)
            raise ConfigError(
                f"DecisionConfig.relative_max_g must be > 0 (inf: no check), got {self.relative_max_g!r}"
            )
        if isinstance(self.random_effects_min_tenants, bool) or self.random_effects_min_tenants < 1:
            raise ConfigError(
                "DecisionConfig.random_effects_min_tenants must be an int >= 1, "
                f"got {self.random_effects_min_tenants!r}"
            )


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict, why, and the JSON-serialisable figures behind it (``ABTestConcluded.data``).

    ``sequential`` is the always-valid test's state after this look: pass it to the next
    `decide` call of the same test.
    """

    verdict: Verdict
    reasons: list[str]
    numbers: dict[str, Any]
    sequential: SequentialState


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values, in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _json_safe(value: Any) -> Any:
    """Non-finite floats -> None, tuples -> lists, enums -> values (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _effect(w: WelchResult, scale: str) -> tuple[float, float]:
    """``(estimate, variance)`` of a tenant's effect on the common scale."""
    if scale == "relative":
        return w.lift, w.lift_se**2
    return w.diff, w.se**2


def _srm_row(r: SRMResult) -> dict[str, Any]:
    return {
        "n_control": r.n_control,
        "n_treatment": r.n_treatment,
        "chi2": r.chi2,
        "p_value": r.p_value,
        "p_sequential": r.p_sequential,
    }


def _scale(cfg: DecisionConfig, state: SequentialState, ready: Sequence[TenantArms]) -> str:
    """``relative`` when every tenant's lift is a well-estimated ratio, else ``absolute``.

    A relative lift divides by the control mean; its delta-method variance holds only when
    that mean is far from zero relative to its own error (Fieller's g small). The demo's
    first A/Bs had control means of 0.11-0.20 on [-1, 1] from ~100-300 users (g ~ 0.1-0.4):
    a +0.22 difference with z ~ 4 became a lift of 1.3 +- 0.9, which no test can tell from
    zero. A test already on the absolute scale stays there: a switch restarts the sequential
    test and throws its evidence away.
    """
    if state.looks and state.scale == "absolute":
        return "absolute"
    z2 = NormalDist().inv_cdf(1.0 - cfg.alpha / 2.0) ** 2
    for a in ready:
        mean = a.control.mean
        if mean < cfg.relative_min_control:
            return "absolute"
        if z2 * a.control.mean_variance / (mean * mean) > cfg.relative_max_g:  # Fieller's g
            return "absolute"
    return "relative"


def _use_random(cfg: DecisionConfig, meta: MetaResult) -> bool:
    return cfg.random_effects and meta.k >= cfg.random_effects_min_tenants


def _sequential_p(estimate: float, variance: float, tau: float) -> float:
    if variance <= 0.0:
        return 0.0 if estimate != 0.0 else 1.0
    log_lr = msprt_log_likelihood_ratio(estimate, variance, tau)
    return math.exp(-log_lr) if log_lr > 0.0 else 1.0


def decide(
    tenants: Sequence[TenantArms],
    *,
    elapsed_days: float,
    config: DecisionConfig | None = None,
    sequential: SequentialState | None = None,
) -> Decision:
    """Decide one look of a cross-tenant A/B test (rules in the module docstring).

    Parameters
    ----------
    tenants : sequence of TenantArms
        Each tenant's cumulative arms since the test started; tenant ids unique.
    elapsed_days : float
        Time since the test started.
    config : DecisionConfig, optional
        Thresholds; defaults from the product brief.
    sequential : SequentialState, optional
        The ``Decision.sequential`` of the previous look of this test (None at the first).
    """
    cfg = config or DecisionConfig()
    state = sequential or SequentialState()
    if not tenants:
        raise ValueError("decide needs at least one tenant's arms, got none")
    ids = [a.tenant_id for a in tenants]
    if len(set(ids)) != len(ids):
        raise ValueError(f"decide: duplicate tenant ids in {ids!r}")
    if not (math.isfinite(elapsed_days) and elapsed_days >= 0.0):
        raise ValueError(f"elapsed_days must be >= 0, got {elapsed_days!r}")

    srm = check_srm(tenants, cfg.treatment_share, alpha=cfg.srm_alpha, sequential=cfg.srm_sequential)
    thetas: dict[str, float] = {}
    analysed: list[TenantArms] = []
    for arms in tenants:
        if (
            cfg.use_cuped
            and arms.control.has_covariate
            and arms.treatment.has_covariate
            and arms.control.n >= 1
            and arms.treatment.n >= 1
        ):
            result = cuped_adjust(arms)
            thetas[arms.tenant_id] = result.theta
            analysed.append(result.adjusted)
        else:
            analysed.append(arms)
    ready = [a for a in analysed if min(a.control.n, a.treatment.n) >= cfg.min_samples_per_arm]
    short = [a.tenant_id for a in analysed if min(a.control.n, a.treatment.n) < cfg.min_samples_per_arm]
    welch = [welch_test(a, alpha=cfg.alpha) for a in ready]
    scale = _scale(cfg, state, ready)
    bar = cfg.min_lift if scale == "relative" else cfg.min_absolute_effect

    tau = cfg.mixture_sd if scale == "relative" else cfg.mixture_sd_absolute
    harm_p = [_sequential_p(*_effect(w, scale), tau) if _effect(w, scale)[0] < 0 else 1.0 for w in welch]
    harm_adj = holm_adjust(harm_p) if welch else []
    harmed = [w.tenant_id for w, p in zip(welch, harm_adj, strict=True) if p < cfg.alpha]

    meta: MetaResult | None = None
    effects = [TenantEffect(w.tenant_id, *_effect(w, scale)) for w in welch if _effect(w, scale)[1] > 0.0]
    if effects:
        meta = combine_effects(effects, alpha=cfg.alpha)
        est, se = (meta.random, meta.random_se) if _use_random(cfg, meta) else (meta.fixed, meta.fixed_se)
        state = msprt_update(state, est, se * se, tau=tau, alpha=cfg.alpha, scale=scale)

    reasons: list[str] = []
    verdict, rule = Verdict.CONTINUE, "continue"
    if not srm.clean:
        verdict, rule = Verdict.ROLLBACK, "srm"
        where = list(srm.mismatched_tenants) + (["overall"] if srm.overall_mismatch else [])
        reasons.append(
            f"sample-ratio mismatch in {', '.join(where)} "
            f"({'anytime-valid' if srm.sequential else 'chi-square'} p < "
            f"{srm.per_tenant_alpha:.3g} per tenant / {srm.alpha:.3g} overall) against "
            f"treatment share {cfg.treatment_share}: assignment or logging is broken"
        )
    if harmed:
        verdict = Verdict.ROLLBACK
        rule = "srm" if rule == "srm" else "harm"
        reasons.append(
            f"guardrail: tenant(s) {', '.join(harmed)} significantly harmed "
            f"(Holm-adjusted always-valid p < {cfg.alpha})"
        )
    if verdict is Verdict.CONTINUE:
        total_per_arm = min(sum(a.control.n for a in ready), sum(a.treatment.n for a in ready))
        verdict, rule = _main_rule(cfg, state, meta, short, total_per_arm, elapsed_days, bar, scale,
                                   reasons)

    numbers = _numbers(
        cfg, verdict, elapsed_days, scale, welch, harm_p, harm_adj, srm, meta, state, thetas, short
    )
    numbers["rule"] = rule
    return Decision(verdict, reasons, numbers, state)


def _main_rule(
    cfg: DecisionConfig,
    state: SequentialState,
    meta: MetaResult | None,
    short: list[str],
    total_per_arm: int,
    elapsed_days: float,
    bar: float,
    scale: str,
    reasons: list[str],
) -> tuple[Verdict, str]:
    """The verdict of rules 3-8 and which rule gave it (``Decision.numbers["rule"]``)."""
    at_end = cfg.max_duration_days is not None and elapsed_days >= cfg.max_duration_days
    if short:
        reasons.append(
            f"fewer than {cfg.min_samples_per_arm} units per arm in tenant(s) {', '.join(short)}: "
            "not analysed at this look"
        )
    if meta is None:
        reasons.append(f"no tenant with {cfg.min_samples_per_arm} units per arm and a variance yet")
        if at_end:
            reasons.append(f"inconclusive at planned end ({cfg.max_duration_days} days)")
            return Verdict.ROLLBACK, "inconclusive"
        return Verdict.CONTINUE, "continue"
    if total_per_arm < cfg.min_total_per_arm:
        reasons.append(
            f"{total_per_arm} units in the smaller arm over all tenants, fewer than {cfg.min_total_per_arm}"
        )
        if at_end:  # as for the per-tenant floor: low traffic does not keep a test open
            reasons.append(f"inconclusive at planned end ({cfg.max_duration_days} days)")
            return Verdict.ROLLBACK, "inconclusive"
        return Verdict.CONTINUE, "continue"
    est = state.last_estimate
    significant = state.p_value < cfg.alpha
    what = f"{scale} effect {est:+.4f} (always-valid p = {state.p_value:.3g})"
    if significant and est < 0.0:
        reasons.append(f"{what}: significantly worse")
        return Verdict.ROLLBACK, "worse"
    if elapsed_days < cfg.min_duration_days:
        reasons.append(f"{what}; minimum duration {cfg.min_duration_days} days not reached")
        return Verdict.CONTINUE, "continue"
    if significant and est >= bar:
        reasons.append(f"{what}: significant and >= {bar}")
        return Verdict.SHIP, "ship"
    if state.ci_high < bar:
        reasons.append(f"{what}: confidence sequence upper bound {state.ci_high:.4f} < {bar}")
        return Verdict.ROLLBACK, "futility"
    if at_end:
        reasons.append(f"{what}: inconclusive at planned end ({cfg.max_duration_days} days)")
        return Verdict.ROLLBACK, "inconclusive"
    reasons.append(f"{what}: not yet conclusive")
    return Verdict.CONTINUE, "continue"


def _numbers(
    cfg: DecisionConfig,
    verdict: Verdict,
    elapsed_days: float,
    scale: str,
    welch: list[WelchResult],
    harm_p: list[float],
    harm_adj: list[float],
    srm: SRMReport,
    meta: MetaResult | None,
    state: SequentialState,
    thetas: dict[str, float],
    short: list[str],
) -> dict[str, Any]:
    tenants = []
    for w, hp, ha in zip(welch, harm_p, harm_adj, strict=True):
        row = {k: getattr(w, k) for k in WelchResult.__slots__}
        row.update(harm_p_sequential=hp, harm_p_holm=ha)
        if w.tenant_id in thetas:
            row["cuped_theta"] = thetas[w.tenant_id]
        tenants.append(row)
    meta_row: dict[str, Any] | None = None
    if meta is not None:
        meta_row = {k: getattr(meta, k) for k in MetaResult.__slots__}
        meta_row["estimate_used"] = "random" if _use_random(cfg, meta) else "fixed"
    return dict(
        _json_safe(
            {
                "verdict": verdict,
                "elapsed_days": elapsed_days,
                "scale": scale,
                "config": asdict(cfg),
                "tenants": tenants,
                "tenants_below_min_samples": short,
                "srm": {
                    "clean": srm.clean,
                    "sequential": srm.sequential,
                    "mismatched_tenants": srm.mismatched_tenants,
                    "overall_mismatch": srm.overall_mismatch,
                    "overall": _srm_row(srm.overall),
                    "per_tenant": {r.scope: _srm_row(r) for r in srm.per_tenant},
                },
                "meta": meta_row,
                "sequential": state.to_json(),
            }
        )
    )
