"""hermes_fed.abtest: pure statistics of cross-tenant A/B tests (DESIGN.md §8).

Nodes report per-arm sufficient statistics (`ArmStats`); the coordinator runs Welch's test
per tenant, combines tenants by meta-analysis, checks SRM, optionally CUPED-adjusts, folds
each round into an always-valid mSPRT and `decide`s SHIP / ROLLBACK / CONTINUE.
"""

from hermes_fed.abtest.arms import ArmStats, TenantArms
from hermes_fed.abtest.cuped import CupedResult, cuped_adjust
from hermes_fed.abtest.decision import Decision, DecisionConfig, Verdict, decide, holm_adjust
from hermes_fed.abtest.meta import MetaResult, TenantEffect, combine_effects
from hermes_fed.abtest.paired import decide_offline, paired_test
from hermes_fed.abtest.sequential import (
    SequentialState,
    msprt_log_likelihood_ratio,
    msprt_update,
)
from hermes_fed.abtest.srm import SRMReport, SRMResult, check_srm, srm_bayes_factor, srm_test
from hermes_fed.abtest.trend import QualityGuardConfig, QualityTrend, quality_trend
from hermes_fed.abtest.welch import LiftKind, WelchResult, welch_test

__all__ = [
    "ArmStats",
    "CupedResult",
    "Decision",
    "DecisionConfig",
    "LiftKind",
    "MetaResult",
    "QualityGuardConfig",
    "QualityTrend",
    "SRMReport",
    "SRMResult",
    "SequentialState",
    "TenantArms",
    "TenantEffect",
    "Verdict",
    "WelchResult",
    "check_srm",
    "combine_effects",
    "cuped_adjust",
    "decide",
    "decide_offline",
    "holm_adjust",
    "msprt_log_likelihood_ratio",
    "msprt_update",
    "paired_test",
    "quality_trend",
    "srm_bayes_factor",
    "srm_test",
    "welch_test",
]
