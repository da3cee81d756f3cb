"""``node join``'s node config from ``node.toml`` (issue 21, items 1 and 3): no ingest token
needed, and a PostgreSQL tenant's schema reaches the ClientApp, which reads its own log
there (a dropped schema made the node read ``public`` and find nothing to train)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from hermes_fed.federation.node_settings import NodeSettings
from tenant_node.cli.join_command import node_config_from_args


def _join_args(config: Path, **overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "config": str(config), "tenant_id": None, "store": None, "schema": None,
        "keyring": None, "base_model": "/models/base", "k_min": 20, "heldout_fraction": 0.2,
        "split_seed": 0}
    values.update(overrides)
    return argparse.Namespace(**values)


def test_join_reads_the_store_keys_of_node_toml_and_needs_no_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a node TOML that names a token variable nobody set
    monkeypatch.delenv("HERMES_FED_NODE_TOKEN", raising=False)
    config = tmp_path / "node.toml"
    config.write_text('tenant_id = "globex"\nstore_url = "postgresql+psycopg://h/db"\n'
                      'store_schema = "tenant_globex"\ntoken_env = "UNSET_TOKEN_VAR"\n'
                      '[quality.tiers]\nsilver_from = 0.4\n')

    # Execute
    node_config = node_config_from_args(_join_args(config))

    # Assert: the store, its schema and the [quality] file travel; no token is asked for
    settings = NodeSettings.from_node_config(node_config)
    assert (settings.tenant_id, settings.store, settings.store_schema) == (
        "globex", "postgresql+psycopg://h/db", "tenant_globex")
    assert settings.quality_config == str(config.resolve())
    assert settings.quality().tiers.silver_from == 0.4
    assert settings.base_model == "/models/base"


def test_a_relative_sqlite_store_resolves_against_the_toml_and_flags_win(tmp_path: Path) -> None:
    config = tmp_path / "acme" / "node.toml"
    config.parent.mkdir()
    config.write_text('tenant_id = "acme"\n')
    default = NodeSettings.from_node_config(node_config_from_args(_join_args(config)))
    flagged = NodeSettings.from_node_config(node_config_from_args(_join_args(
        config, store="postgresql+psycopg://h/db", schema="s2")))
    assert default.store == f"sqlite:///{tmp_path / 'acme' / 'var' / 'events.db'}"
    assert default.store_schema == ""
    assert (flagged.store, flagged.store_schema) == ("postgresql+psycopg://h/db", "s2")


@pytest.mark.postgres
def test_the_clientapp_reads_the_tenants_own_schema(tmp_path: Path, pg_url: str,
                                                    pg_schema: str) -> None:
    # Prepare: globex's events in its own schema only; the node's TOML names that schema
    import random

    from hermes_fed.events import new_event
    from hermes_fed.events.session import SessionStarted, TrajectoryRecorded
    from hermes_fed.store import open_store
    from tenant_node.flower.client_app import app
    from tests.integration.federation_data import trajectory

    store = open_store(pg_url, "globex", schema=pg_schema)
    rng = random.Random(0)
    try:
        store.append([new_event(record, stream_id=f"session-{i}") for i in range(25)
                      for record in (SessionStarted(user_ref="u", model_version="base"),  # type: ignore[call-arg]
                                     TrajectoryRecorded(**trajectory("globex", i, rng)))])  # type: ignore[arg-type]
    finally:
        store.close()
    config = tmp_path / "node.toml"
    config.write_text(f'tenant_id = "globex"\nstore_url = "{pg_url}"\n'
                      f'store_schema = "{pg_schema}"\n')
    node_config = node_config_from_args(_join_args(config))
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    context = Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(),
                      run_config={})

    # Execute: the status query the coordinator sends, answered by the node's ClientApp
    reply = app(message=Message(RecordDict(), dst_node_id=1, message_type="query.status"),
                context=context)

    # Assert: every event of the schema counted (25 sessions x 2), the tenant named
    assert not reply.has_error()
    assert reply.content.metric_records["metrics"]["count.events"] == 50
    assert dict(reply.content.config_records["versions"]) == {"tenant-id": "globex"}
