"""QualityConfig: defaults of DESIGN.md §5, TOML loading, and bad values named in errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hermes_fed.errors import ConfigError
from hermes_fed.quality.config import (
    CombineWeights,
    HttpJudgeConfig,
    ImplicitWeights,
    QualityConfig,
    SelectionConfig,
    TierConfig,
    TriggerConfig,
)


def test_defaults_are_the_design_values() -> None:
    c = QualityConfig()
    assert (c.implicit.base, c.implicit.accepted, c.implicit.no_retry, c.implicit.many_retries,
            c.implicit.edit, c.implicit.continued, c.implicit.error) == (
        0.5, 0.3, 0.1, -0.2, -0.3, 0.1, -0.4)
    # silver starts above 0.30, where the formula puts an answer with no feedback at all
    assert (c.tiers.platinum_from, c.tiers.gold_from, c.tiers.silver_from) == (0.85, 0.6, 0.35)
    assert (c.selection.platinum_min, c.selection.gold_min, c.selection.silver_min,
            c.selection.bronze_min, c.selection.bronze_fraction) == (50, 200, 500, 0, 0.0)
    assert (c.trigger.min_gap_days, c.trigger.stale_days, c.trigger.drop_fraction,
            c.trigger.min_new, c.trigger.high_quality_rate,
            c.trigger.high_quality_score) == (3.0, 14.0, 0.05, 500, 0.4, 0.7)


@pytest.mark.parametrize(
    ("factory", "kwargs", "named"),
    [
        (ImplicitWeights, {"base": float("nan")}, "ImplicitWeights.base"),
        (ImplicitWeights, {"error": -2.0}, "ImplicitWeights.error"),
        (ImplicitWeights, {"many_retries_at": 0}, "many_retries_at"),
        (CombineWeights, {"implicit": 0.0, "judges": 0.0}, "cannot both be 0"),
        (CombineWeights, {"judges": -1.0}, "CombineWeights.judges"),
        (TierConfig, {"gold_from": 0.9}, "gold_from=0.9"),
        (TierConfig, {"bronze_weight": -0.1}, "bronze_weight"),
        (SelectionConfig, {"minhash_permutations": 60}, "multiple of lsh_bands"),
        (SelectionConfig, {"dedupe_threshold": 0.0}, "dedupe_threshold"),
        (SelectionConfig, {"gold_min": -1}, "gold_min"),
        (TriggerConfig, {"stale_days": 1.0}, "stale_days"),
        (TriggerConfig, {"high_quality_rate": 1.5}, "high_quality_rate"),
        (HttpJudgeConfig, {"url": "ftp://x"}, "ftp://x"),
        (HttpJudgeConfig, {"timeout_s": 0}, "timeout_s"),
    ],
)
def test_bad_values_raise_config_error_naming_them(factory: Any, kwargs: dict[str, Any],
                                                   named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        factory(**kwargs)


def test_from_toml_reads_the_quality_section(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "node.toml"
    path.write_text('[node]\nname = "x"\n[quality.implicit]\nerror = -0.5\n'
                    '[quality.trigger]\nmin_new = 100\n')
    # Execute
    config = QualityConfig.from_toml(path)
    # Assert
    assert config.implicit.error == -0.5 and config.trigger.min_new == 100
    assert config.tiers == TierConfig()


@pytest.mark.parametrize(
    ("section", "named"),
    [({"implicitt": {}}, "implicitt"), ({"implicit": {"bsae": 1}}, "bsae"),
     ({"tiers": 3}, "quality.tiers")],
)
def test_unknown_keys_are_refused(section: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        QualityConfig.from_mapping(section)
