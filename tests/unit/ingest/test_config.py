"""The node's TOML configuration (tenant_node.config)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from hermes_fed.errors import ConfigError
from tenant_node.config import NodeConfig, load_node_config, node_config_from_mapping

EXAMPLE = Path(__file__).resolve().parents[3] / "tenant_node" / "node.example.toml"
BASE = {"tenant_id": "acme", "token": "t" * 16}


def test_the_example_file_loads_and_shows_every_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setenv("HERMES_FED_NODE_TOKEN", "x" * 20)

    # Execute
    config = load_node_config(EXAMPLE)

    # Assert: every field is documented in the example and has help text.
    text = EXAMPLE.read_text()
    for f in fields(NodeConfig):
        assert f.name in text, f.name
        assert f.metadata.get("help"), f.name
    assert config.resolved_token() == "x" * 20
    assert config.resolved_store_url == f"sqlite:///{EXAMPLE.parent / 'var' / 'events.db'}"
    assert config.resolved_keyring_path == EXAMPLE.parent / "var" / "keyring.json"


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "node.toml"
    path.write_text('tenant_id = "a"\ntoken = "0123456789abcdef"\n'
                    'store_url = "sqlite:///db/a.db"\nkeyring_path = "keys/k.json"\n')

    # Execute
    config = load_node_config(path)

    # Assert
    assert config.resolved_store_url == f"sqlite:///{tmp_path / 'db' / 'a.db'}"
    assert config.resolved_keyring_path == tmp_path / "keys" / "k.json"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tenant_id": ""}, "tenant_id"),
        ({"token": ""}, "no token"),
        ({"token": "short"}, "at least 16"),
        ({"listen": "nowhere"}, "listen"),
        ({"listen": "0.0.0.0:50061"}, "beyond loopback"),
        ({"max_event_bytes": 10}, "max_event_bytes"),
        ({"max_event_bytes": "1MB"}, "max_event_bytes must be int"),
        ({"workers": True}, "workers must be int"),
        ({"metrics_port": 70000}, "metrics_port"),
        ({"projection_interval_s": 0}, "projection_interval_s"),
        ({"projections": ["no_colon"]}, "module:Class"),
        ({"tls": {"cert_file": "x.crt"}}, "set both cert_file and key_file"),
        ({"tls": {"cert_file": "missing.crt", "key_file": "missing.key"}}, "no such file"),
        ({"tls": {"bogus": 1}}, "tls: unknown keys"),
        ({"colour": "blue"}, "unknown keys ['colour']"),
        ({"gateway": {"capture_sync": "later"}}, "gateway.capture_sync must be one of commit, "
                                                "behind"),
    ],
)
def test_bad_values_are_refused_naming_the_key(
    overrides: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    monkeypatch.delenv("HERMES_FED_NODE_TOKEN", raising=False)

    # Execute / Assert
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        node_config_from_mapping({**BASE, **overrides})


def test_remote_listen_is_allowed_when_asked_for() -> None:
    # Execute
    config = node_config_from_mapping({**BASE, "listen": "0.0.0.0:1",
                                       "allow_insecure_remote": True})

    # Assert
    assert config.listen == "0.0.0.0:1"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_node_config(tmp_path / "nope.toml")


def test_the_quality_table_is_part_of_the_node_config(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "node.toml"
    path.write_text('tenant_id = "a"\ntoken = "0123456789abcdef"\n'
                    "[quality.tiers]\nsilver_from = 0.25\n"
                    "[quality.selection]\nbronze_min = 10\n")

    # Execute
    config = load_node_config(path)

    # Assert
    assert config.quality.tiers.silver_from == 0.25
    assert config.quality.selection.bronze_min == 10
    assert config.quality.tiers.gold_from == 0.60  # untouched keys keep their defaults


@pytest.mark.parametrize(("quality", "message"), [
    ({"tiers": {"silver_form": 0.2}}, "[quality.tiers] unknown key 'silver_form'"),
    ({"tier": {}}, "[quality] unknown key 'tier'"),
    ({"tiers": {"silver_from": 2.0}}, "TierConfig.silver_from must be a finite number"),
    ("strict", "[quality] must be a table"),
])
def test_a_bad_quality_table_is_refused_naming_the_key(quality: Any, message: str) -> None:
    # Execute
    with pytest.raises(ConfigError) as caught:
        node_config_from_mapping({**BASE, "quality": quality})

    # Assert
    assert message in str(caught.value)


def test_the_daemons_quality_projection_uses_the_node_quality_config(tmp_path: Path) -> None:
    # Prepare
    from hermes_fed.quality.config import QualityConfig
    from hermes_fed.quality.projection import QualityProjection
    from tenant_node.ingest.runtime import node_projection

    config = node_config_from_mapping({**BASE, "quality": {"tiers": {"silver_from": 0.25}}})

    # Execute
    projection = node_projection("hermes_fed.quality.projection:QualityProjection", config)

    # Assert: the same read-model version as the CLI computes from the same file
    assert isinstance(projection, QualityProjection)
    assert projection.config == config.quality
    assert projection.version == QualityProjection(
        QualityConfig.from_mapping({"tiers": {"silver_from": 0.25}})).version
    assert projection.version != QualityProjection().version
