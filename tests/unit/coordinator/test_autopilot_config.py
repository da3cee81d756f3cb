"""The ``[autopilot]`` TOML table: defaults, overrides, and clear refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from coordinator.autopilot.config import AutopilotConfig, load_config
from hermes_fed.errors import ConfigError


def test_defaults_are_the_design_shares() -> None:
    cfg = load_config(None)
    assert (cfg.canary_share, cfg.ab_share, cfg.min_nodes) == (0.01, 0.09, 1)
    assert cfg.promotion().ab_fraction == 0.09


def test_a_toml_table_and_flags_on_top(tmp_path: Path) -> None:
    path = tmp_path / "autopilot.toml"
    path.write_text('[autopilot]\ncadence_seconds = 5\nmin_nodes = 2\nstale_days = 7\n'
                    'webhook_url = "http://127.0.0.1:9/hook"\n')
    cfg = load_config(path, {"min_nodes": 3, "rounds_per_cycle": None})
    assert (cfg.cadence_seconds, cfg.min_nodes, cfg.stale_days) == (5.0, 3, 7.0)
    assert cfg.rounds_per_cycle == 1 and cfg.webhook_url.endswith("/hook")


@pytest.mark.parametrize(("body", "words"), [
    ("[autopilot]\nmin_node = 2\n", "unknown key(s) 'min_node'"),
    ("[autopilot]\nmin_nodes = 0\n", "min_nodes must be an integer >= 1, got 0"),
    ("[autopilot]\ncanary_share = 0.2\nab_share = 0.1\n", "must not exceed"),
    ("[autopilot]\nab_share = 0.995\n", "canary_share=0.01, ab_share=0.995"),
    ("[autopilot]\ncadence_seconds = -1\n", "cadence_seconds must be a number > 0"),
    ("[autopilot]\nmin_nodes = \"two\"\n", "min-nodes must be int, got 'two'"),
    ("[autopilot]\nwebhook_url = \"ftp://x\"\n", "webhook_url must be an http(s) URL"),
    ("[autopilot]\ncanary_days = 2\ncanary_max_days = 1\n", "canary_max_days must be >= canary_days"),
    ("autopilot = 3\n", "[autopilot] must be a table"),
    ("[autopilot\n", "not valid TOML"),
])
def test_bad_settings_are_refused_naming_the_key_and_value(tmp_path: Path, body: str,
                                                           words: str) -> None:
    path = tmp_path / "a.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert words in str(info.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read autopilot config"):
        load_config(tmp_path / "nope.toml")


def test_the_dataclass_checks_itself() -> None:
    with pytest.raises(ConfigError, match="mode must be one of"):
        AutopilotConfig(mode="median")


def test_the_rounds_settings_table_is_checked_as_round_run_checks_it(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text("[autopilot]\nmin_nodes = 2\n[autopilot.round_config]\n"
                    "local-steps = 50\nrank = 8\nmin-nodes = 2\n")
    assert load_config(path).round_config == {"local-steps": 50, "rank": 8, "min-nodes": 2}
    for body, words in (("local-stepz = 5\n", "unknown run config key(s) 'local-stepz'"),
                        ("min-nodes = 0\n", "min-nodes must be >= 1, got 0"),
                        ("mode = \"exact\"\n", "sets mode, which the autopilot sets itself")):
        path.write_text("[autopilot.round_config]\n" + body)
        with pytest.raises(ConfigError, match=re.escape(words)):
            load_config(path)
