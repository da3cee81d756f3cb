"""Placeholder index (P1-P3) and the validated ``[redaction]`` config."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermes_fed.errors import ConfigError
from hermes_fed.privacy import InMemoryPlaceholderIndex, RedactionConfig
from hermes_fed.privacy.placeholders import PlaceholderMinter, normalise

SECRET = b"k" * 32


def test_p3_index_stores_digests_not_values() -> None:
    # Prepare
    index = InMemoryPlaceholderIndex()
    minter = PlaceholderMinter(SECRET, index)
    # Execute
    minter.placeholder("s", "EMAIL_ADDRESS", "dave@example.com")
    # Assert
    stored = repr(index._numbers)  # the index's whole state
    assert "dave" not in stored and "example" not in stored
    assert all(len(key[2]) == 32 for key in index._numbers)


def test_digest_depends_on_tenant_secret_and_session() -> None:
    a = PlaceholderMinter(b"a" * 32, InMemoryPlaceholderIndex())
    b = PlaceholderMinter(b"b" * 32, InMemoryPlaceholderIndex())
    assert a.digest("s", "EMAIL_ADDRESS", "x@y.com") != b.digest("s", "EMAIL_ADDRESS", "x@y.com")
    assert a.digest("s1", "EMAIL_ADDRESS", "x@y.com") != a.digest("s2", "EMAIL_ADDRESS", "x@y.com")


@pytest.mark.parametrize(("entity", "a", "b"), [
    ("PHONE_NUMBER", "+1 (415) 555-0134", "+1 415.555.0134"),
    ("EMAIL_ADDRESS", "Bob@Example.com", "bob@example.com"),
    ("CREDIT_CARD", "4111 1111 1111 1111", "4111-1111-1111-1111"),
    ("IBAN_CODE", "GB82 WEST 1234 5698 7654 32", "gb82west12345698765432"),
])
def test_p1_spelling_variants_share_a_placeholder(entity: str, a: str, b: str) -> None:
    minter = PlaceholderMinter(SECRET, InMemoryPlaceholderIndex())
    assert normalise(entity, a) == normalise(entity, b)
    assert minter.placeholder("s", entity, a) == minter.placeholder("s", entity, b)


def test_p2_numbers_are_assigned_once_per_session_and_type() -> None:
    index = InMemoryPlaceholderIndex()
    assert [index.number_for("s", "T", d) for d in (b"1", b"2", b"1", b"3")] == [1, 2, 1, 3]
    assert index.number_for("s", "U", b"1") == 1
    assert index.number_for("t", "T", b"9") == 1


def test_config_from_mapping_converts_lists() -> None:
    config = RedactionConfig.from_mapping({"deny_terms": ["Acme"], "score_threshold": 0.5})
    assert config.deny_terms == ("Acme",) and config.score_threshold == 0.5


def test_config_from_toml_section(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[redaction]\ndeny_terms = ["Acme Corp"]\nprefilter = false\n')
    config = RedactionConfig.from_toml(path)
    assert config.deny_terms == ("Acme Corp",) and config.prefilter is False
    assert RedactionConfig.from_toml(tmp_path / "node.toml", section="absent") == RedactionConfig()


@pytest.mark.parametrize(("values", "message"), [
    ({"score_threshold": 1.5}, "score_threshold must be in \\[0, 1\\], got 1.5"),
    ({"entities": ["EMAIL", "PHONE_NUMBER"]}, "unknown entity types \\['EMAIL'\\]"),
    ({"deny_terms": ["ok", " "]}, "deny_terms must be non-empty"),
    ({"phone_regions": ["usa"]}, "phone_regions.*\\['usa'\\]"),
    ({"max_depth": 0}, "max_depth must be >= 1, got 0"),
    ({"spacy_model": "a", "transformers_ner_dir": "."}, "at most one of"),
    ({"transformers_ner_dir": "/nonexistent/ner"}, "not a directory: '/nonexistent/ner'"),
    ({"colour": "blue"}, "unknown keys \\['colour'\\]"),
])
def test_config_rejects_bad_values_naming_them(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RedactionConfig.from_mapping(values)
