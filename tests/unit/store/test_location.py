"""The store part of a node TOML is read with the node's own rules (issue 21, item 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermes_fed.errors import ConfigError
from hermes_fed.store.location import node_store_location
from tenant_node.config import load_node_config

TOKEN = 'token = "0123456789abcdef"\n'


@pytest.mark.parametrize("body", [
    'tenant_id = "acme"\n',
    'tenant_id = "acme"\ndata_dir = "state"\n',
    'tenant_id = "acme"\nstore_url = "sqlite:///db/a.db"\nkeyring_path = "keys/k.json"\n',
    'tenant_id = "acme"\nstore_url = "sqlite:////abs/a.db"\n',
    'tenant_id = "acme"\nstore_url = "postgresql+psycopg://u@h/db"\nstore_schema = "t_acme"\n',
])
def test_the_location_is_the_one_the_node_uses(tmp_path: Path, body: str) -> None:
    # Prepare
    path = tmp_path / "conf" / "node.toml"
    path.parent.mkdir()
    path.write_text(body + TOKEN)

    # Execute
    location = node_store_location(path)
    node = load_node_config(path)

    # Assert
    assert location.url == node.resolved_store_url
    assert location.tenant_id == node.tenant_id
    assert location.schema == node.store_schema
    assert location.keyring_path == str(node.resolved_keyring_path)


def test_a_read_only_command_needs_no_token(tmp_path: Path) -> None:
    # Prepare: no token at all (node serve would refuse this file)
    path = tmp_path / "node.toml"
    path.write_text('tenant_id = "acme"\n')

    # Execute
    location = node_store_location(path)

    # Assert
    assert location.url == f"sqlite:///{tmp_path / 'var' / 'events.db'}"


@pytest.mark.parametrize(("body", "message"), [
    ("store_url = 3\n", "tenant_id must be a non-empty string"),
    ('tenant_id = "a"\nstore_url = 3\n', "store_url must be a string"),
    ('tenant_id = "a"\nstore_schema = 3\n', "store_schema must be a string"),
    ("tenant_id = \n", "not valid TOML"),
])
def test_a_bad_node_toml_is_a_config_error(tmp_path: Path, body: str, message: str) -> None:
    # Prepare
    path = tmp_path / "node.toml"
    path.write_text(body)

    # Execute
    with pytest.raises(ConfigError) as caught:
        node_store_location(path)

    # Assert
    assert message in str(caught.value)
