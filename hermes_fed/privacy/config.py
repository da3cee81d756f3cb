"""Validated configuration of the redactor (the ``[redaction]`` section of the node's TOML).

Every field has a documented default in ``metadata["help"]``; ``__post_init__`` rejects bad
values with a ``ConfigError`` that names the field and the value.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hermes_fed.errors import ConfigError

#: Structured PII types (pattern recognizers with a checksum or a strict shape).
STRUCTURED_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "US_SSN",
    "CRYPTO",
    "MAC_ADDRESS",
    "URL_CREDENTIAL",
)
#: Secret types (stock presidio detects none of them).
SECRET_ENTITIES: tuple[str, ...] = (
    "API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_KEY",
    "JWT",
    "BEARER_TOKEN",
    "PRIVATE_KEY",
    "PASSWORD",
    "SECRET",
)
#: Types a NER model (spaCy or transformers) produces; PERSON is also found without one.
NER_ENTITIES: tuple[str, ...] = ("PERSON", "LOCATION", "ORGANIZATION")
#: Street address lines (with unit, postcode, city), found by rules without a model.
ADDRESS_ENTITY = "STREET_ADDRESS"
#: Per-tenant and per-session deny-list terms.
DENY_ENTITY = "DENY_LIST"
ALL_ENTITIES: tuple[str, ...] = (
    *SECRET_ENTITIES, *STRUCTURED_ENTITIES, *NER_ENTITIES, ADDRESS_ENTITY, DENY_ENTITY,
)

#: JSON keys whose values are structural identifiers of the event schema, never personal.
DEFAULT_SKIP_KEYS: tuple[str, ...] = (
    "role", "tool_call_id", "trajectory_id", "task_type", "type", "event_id", "model_version",
    "variant", "ab_test_id", "user_ref", "judge", "schema_version", "redaction",
)


@dataclass(frozen=True, slots=True)
class RedactionConfig:
    """What the redactor looks for and how.

    Examples
    --------
    >>> RedactionConfig.from_mapping({"deny_terms": ["Acme Corp"], "score_threshold": 0.5})
    ... # doctest: +ELLIPSIS
    RedactionConfig(...)
    """

    entities: tuple[str, ...] = field(
        default=ALL_ENTITIES,
        metadata={"help": "entity types to redact; default: every type hermes-fed knows"},
    )
    score_threshold: float = field(
        default=0.4,
        metadata={"help": "minimum recognizer score in [0, 1] for a span to be redacted"},
    )
    deny_terms: tuple[str, ...] = field(
        default=(),
        metadata={"help": "tenant-wide terms (customer and user names, identifiers) always "
                          "redacted as DENY_LIST, case-insensitively, on word boundaries"},
    )
    deny_terms_metadata_key: str = field(
        default="deny_terms",
        metadata={"help": "SessionStarted metadata key carrying per-session deny terms; the "
                          "key is removed from the metadata before the event is written"},
    )
    suppress_agent_false_positives: bool = field(
        default=True,
        metadata={"help": "treat ISO timestamps, UUIDs, file names, version strings and long "
                          "numeric ids as not personal (spans inside them are not redacted)"},
    )
    prefilter: bool = field(
        default=True,
        metadata={"help": "skip recognizers whose cheap trigger does not occur in the text"},
    )
    person_names: bool = field(
        default=True,
        metadata={"help": "find PERSON without a model: capitalised runs judged by a bundled "
                          "name lexicon (first names, surnames, English words) and context "
                          "(titles, greetings, name-like JSON keys, log fields, table "
                          "columns); a configured NER model adds to it"},
    )
    street_addresses: bool = field(
        default=True,
        metadata={"help": "find STREET_ADDRESS: street lines in US/UK/IE/CA/AU, FR, ES/IT/PT/"
                          "BR/PL and DE/AT/CH/NL/Nordic formats, with unit, postcode, city"},
    )
    spacy_model: str | None = field(
        default=None,
        metadata={"help": "installed spaCy pipeline name or directory with an NER component; "
                          "enables PERSON/LOCATION/ORGANIZATION"},
    )
    transformers_ner_dir: str | None = field(
        default=None,
        metadata={"help": "local transformers token-classification model directory (loaded "
                          "offline); enables PERSON/LOCATION/ORGANIZATION"},
    )
    phone_regions: tuple[str, ...] = field(
        default=("US", "GB", "DE", "FR", "IN", "AU", "NL", "ES", "IT", "JP", "BR", "CA"),
        metadata={"help": "regions tried for phone numbers written without a +country code"},
    )
    skip_keys: tuple[str, ...] = field(
        default=DEFAULT_SKIP_KEYS,
        metadata={"help": "JSON keys whose string values are schema identifiers, left as is"},
    )
    json_in_strings: bool = field(
        default=True,
        metadata={"help": "parse strings that hold a JSON object/array (tool results) and "
                          "redact them value by value, keeping them valid JSON"},
    )
    max_depth: int = field(
        default=64,
        metadata={"help": "deepest JSON nesting walked; deeper values are redacted as text"},
    )

    def __post_init__(self) -> None:
        unknown = sorted(set(self.entities) - set(ALL_ENTITIES))
        if unknown:
            raise ConfigError(f"redaction.entities: unknown entity types {unknown!r}; "
                              f"known: {list(ALL_ENTITIES)!r}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"redaction.score_threshold must be in [0, 1], "
                              f"got {self.score_threshold!r}")
        if any(not isinstance(t, str) or not t.strip() for t in self.deny_terms):
            raise ConfigError(f"redaction.deny_terms must be non-empty strings, "
                              f"got {self.deny_terms!r}")
        if not self.deny_terms_metadata_key:
            raise ConfigError("redaction.deny_terms_metadata_key must not be empty")
        if self.spacy_model is not None and self.transformers_ner_dir is not None:
            raise ConfigError("redaction: set at most one of spacy_model and "
                              f"transformers_ner_dir, got {self.spacy_model!r} and "
                              f"{self.transformers_ner_dir!r}")
        if self.transformers_ner_dir is not None and not Path(
            self.transformers_ner_dir
        ).is_dir():
            raise ConfigError(f"redaction.transformers_ner_dir is not a directory: "
                              f"{self.transformers_ner_dir!r}")
        bad_regions = [r for r in self.phone_regions if len(r) != 2 or not r.isupper()]
        if bad_regions:
            raise ConfigError(f"redaction.phone_regions must be ISO 3166 alpha-2 codes, "
                              f"got {bad_regions!r}")
        if self.max_depth < 1:
            raise ConfigError(f"redaction.max_depth must be >= 1, got {self.max_depth!r}")

    @property
    def ner_configured(self) -> bool:
        """Whether a NER model is configured."""
        return self.spacy_model is not None or self.transformers_ner_dir is not None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RedactionConfig:
        """Build from a dict (a parsed ``[redaction]`` TOML table); lists become tuples."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"redaction: unknown keys {unknown!r}; known: {sorted(known)!r}")
        converted: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
        }
        return cls(**converted)

    @classmethod
    def from_toml(cls, path: str | Path, section: str = "redaction") -> RedactionConfig:
        """Read the ``[redaction]`` section of a TOML file (an absent section gives defaults)."""
        with Path(path).open("rb") as fh:
            doc = tomllib.load(fh)
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table, got {type(table).__name__}")
        return cls.from_mapping(table)
