"""A user_ref that is an e-mail or a phone number becomes a keyed pseudonym (U1-U3)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hermes_fed.privacy.pseudonyms import PREFIX, is_personal_ref, pseudonymous_ref

SECRET = b"unit-test-tenant-secret-32-bytes"


@pytest.mark.parametrize(
    ("user_ref", "personal"),
    [
        ("ann.lee@example.com", True),
        (" Ann.Lee@Example.COM ", True),
        ("+1 415 555 0199", True),
        ("(415) 555-0199", True),
        ("+44 20 7946 0958", True),
        ("u-42", False),
        ("user-ref-canary-acme", False),
        ("anon-0123456789abcdef", False),
        ("12345", False),  # too short for a phone number
        ("ref-9f86d081884c7d659a2feaa0c55ad015", False),  # a pseudonym is kept (U3)
        ("ann@", False),
    ],
)
def test_u1_which_user_refs_are_personal(user_ref: str, personal: bool) -> None:
    assert is_personal_ref(user_ref) is personal


def test_u1_the_pseudonym_is_the_keyed_hash_of_the_normalised_value() -> None:
    # Expected: computed independently with hmac.new over the normalised value
    expected = PREFIX + hmac.new(SECRET, b"user_ref\x1fann.lee@example.com", hashlib.sha256).hexdigest()[:32]
    assert pseudonymous_ref(SECRET, "Ann.Lee@example.com") == expected
    assert pseudonymous_ref(SECRET, " ann.lee@EXAMPLE.com") == expected  # U2
    assert pseudonymous_ref(SECRET, "+1 415 555 0199") == pseudonymous_ref(SECRET, "+1-415-555-0199")
    assert pseudonymous_ref(b"another-tenant-secret-32-bytes!!", "ann.lee@example.com") != expected
    assert pseudonymous_ref(SECRET, "u-42") == "u-42"  # U3


@given(st.one_of(st.emails(), st.text(min_size=1, max_size=40)))
def test_u3_mapping_twice_changes_nothing(user_ref: str) -> None:
    once = pseudonymous_ref(SECRET, user_ref)
    assert pseudonymous_ref(SECRET, once) == once
    assert not is_personal_ref(once)
