"""PERSON and STREET_ADDRESS without a model: the default recognizers, table by table."""

from __future__ import annotations

import json

import pytest

from hermes_fed.privacy import RedactionConfig, Redactor
from hermes_fed.privacy.address_recognizer import StreetAddressRecognizer
from hermes_fed.privacy.name_lexicon import fold, lexicon
from hermes_fed.privacy.name_recognizer import PersonNameRecognizer, looks_like_name

from .conftest import SECRET


@pytest.fixture(scope="module")
def names() -> PersonNameRecognizer:
    return PersonNameRecognizer()


@pytest.fixture(scope="module")
def addresses() -> StreetAddressRecognizer:
    return StreetAddressRecognizer()


def _spans(recognizer: PersonNameRecognizer | StreetAddressRecognizer, text: str) -> list[str]:
    return [text[r.start:r.end] for r in recognizer.find(text)]


# (text, the names expected whole) - many cultures, free text and log lines
NAMES = [
    ("Please ask Dr. Amara Okonkwo-Ibe about the refund.", ["Amara Okonkwo-Ibe"]),
    ("Meeting notes: Chidi Okafor and Ngozi Adeyemi agreed.", ["Chidi Okafor", "Ngozi Adeyemi"]),
    ("Escalate to Siddharth Venkataraman before noon.", ["Siddharth Venkataraman"]),
    ("Wang Xiuying and Kim Minjun joined the call.", ["Wang Xiuying", "Kim Minjun"]),
    ("Customer Emir Wouter de Smit lives here.", ["Emir Wouter de Smit"]),
    ("Thandiwe Dlamini signed the contract.", ["Thandiwe Dlamini"]),
    ("Assign it to Kazım Mirəhmədov and cc Fəyyaz Şərifova.",
     ["Kazım Mirəhmədov", "Fəyyaz Şərifova"]),
    ("According to Monique Ó Mainchín, the build broke.", ["Monique Ó Mainchín"]),
    ("Forward it to Björn Åkesson and Sigríður Jónsdóttir.",
     ["Björn Åkesson", "Sigríður Jónsdóttir"]),
    ("The parcel for Nguyễn Thị Hương was returned.", ["Nguyễn Thị Hương"]),
    ("Vakris J. Kaupas approved the change.", ["Vakris J. Kaupas"]),
    ("Dear Herr Warmer, thank you.", ["Warmer"]),
    ("I spoke with Mevr. van Dam yesterday.", ["van Dam"]),
    ("Hi Priya, your ticket is resolved.", ["Priya"]),
    ("Thanks Kwame!", ["Kwame"]),
    ("approved by Felicia Pop", ["Felicia Pop"]),
    ("Sorawut Pianduangsri approved the refund.", ["Sorawut Pianduangsri"]),
    ("2025-03-01 12:00:00 INFO auth: login ok user=\"María José García\" role=admin",
     ["María José García"]),
    ("2025-03-01 DEBUG crm: updated contact name='Okafor, Chidi' source=web",
     ["Okafor, Chidi"]),
]


@pytest.mark.parametrize(("text", "expected"), NAMES)
def test_names_found_whole(names: PersonNameRecognizer, text: str, expected: list[str]) -> None:
    # Execute
    found = _spans(names, text)
    # Assert: every name is one span, from its first word to its surname
    assert sorted(found) == sorted(expected)


# Words that are names, but not people here: nothing to redact
TECH_NEGATIVES = [
    "Run a Jenkins job, then check the Sinatra routes.",
    "Bump the Ruby gem and the Rust compiler.",
    "Flask, Django and Rust are all fine.",
    "Grace period ends on Friday.",
    "Bill the customer in May 2024.",
    "Pull Request 42 needs a Code Review.",
    "Tesla Model 3, Apple Watch and Visual Studio Code.",
    "The Jenkins pipeline failed; Kafka consumers lag.",
    "Max retries reached; see Release Notes.",
    "Will do. Hope this helps!",
    "Mark as read and move on.",
    "Julia notebooks and Haskell types.",
]


@pytest.mark.parametrize("text", TECH_NEGATIVES)
def test_tech_words_that_are_names_stay(names: PersonNameRecognizer, text: str) -> None:
    assert _spans(names, text) == []


def test_markdown_table_columns_of_people(names: PersonNameRecognizer) -> None:
    # Prepare: a person column, a package column with the same shape of values
    text = ("| Assignee | Package |\n|---|---|\n| Kwame | Django |\n"
            "| Okafor, Chidi | Flask |")
    # Execute
    found = _spans(names, text)
    # Assert: the assignee cells only (a lone "Kwame" is a person in that column)
    assert found == ["Kwame", "Okafor, Chidi"]


@pytest.mark.parametrize(("value", "expected"), [
    ("Ana Lima", True), ("Okafor, Chidi", True), ("Dr. Ana de Sá", True), ("Kwame", True),
    ("refund", False), ("Release Notes", False), ("send_email", False), ("Flask", False),
    ("A-1042", False), ("Ana Lima 42", False),
])
def test_looks_like_name(value: str, expected: bool) -> None:
    assert looks_like_name(value) is expected


ADDRESSES = [
    ("Ship it to 1600 Pennsylvania Ave NW, Washington, DC 20500 please",
     "1600 Pennsylvania Ave NW, Washington, DC 20500"),
    ("deliver to 221B Baker Street, London NW1 6XE today", "221B Baker Street, London NW1 6XE"),
    ("send to 350 Fifth Avenue, Apt 5B, New York, NY 10118.",
     "350 Fifth Avenue, Apt 5B, New York, NY 10118"),
    ("Lieferung an Hauptstraße 5, 10115 Berlin bitte", "Hauptstraße 5, 10115 Berlin"),
    ("Karl-Marx-Allee 3a ist die Adresse", "Karl-Marx-Allee 3a"),
    ("livrer au 12 rue de Rivoli, 75001 Paris demain", "12 rue de Rivoli, 75001 Paris"),
    ("enviar a Calle Mayor 5, 28013 Madrid", "Calle Mayor 5, 28013 Madrid"),
    ("spedire a Via Roma, 10, 00184 Roma (RM) oggi", "Via Roma, 10, 00184 Roma (RM)"),
    ("Rua Augusta, 100, 1100-053 Lisboa", "Rua Augusta, 100, 1100-053 Lisboa"),
    ("ul. Marszałkowska 10/4, 00-590 Warszawa", "ul. Marszałkowska 10/4, 00-590 Warszawa"),
    ("Keizersgracht 123, 1015 CJ Amsterdam", "Keizersgracht 123, 1015 CJ Amsterdam"),
    ("Kyrkogatan 7, 41115 Göteborg", "Kyrkogatan 7, 41115 Göteborg"),
    ("Flat 3, Henderson Plaza, Leeds LS1 4AP", "Flat 3, Henderson Plaza, Leeds LS1 4AP"),
]


@pytest.mark.parametrize(("text", "expected"), ADDRESSES)
def test_street_addresses(addresses: StreetAddressRecognizer, text: str, expected: str) -> None:
    assert _spans(addresses, text) == [expected]


@pytest.mark.parametrize("text", [
    "run the Jenkins job at 5 pm on Main", "Pinned torch 2.13 and Python 3.", "version 3 Release",
    "Step 2: open port 8080 on the server", "May 2024", "Windows 11 Home",
])
def test_not_addresses(addresses: StreetAddressRecognizer, text: str) -> None:
    assert _spans(addresses, text) == []


def test_json_tool_arguments_use_keys_as_context(redactor: Redactor) -> None:
    # Prepare: a person under an ambiguous key, a tool name under "name", an address key
    args = {"name": "send_email", "assignee": "Kwame", "street": "Hauptstraße 5",
            "body": "Dear Dr. Amara Okonkwo-Ibe, your parcel is at 12 Elm Street."}
    # Execute
    out = redactor.redact_value(args, session_key="s-json")
    # Assert
    assert out == {"name": "send_email", "assignee": "<PERSON_1>",
                   "street": "<STREET_ADDRESS_1>",
                   "body": "Dear Dr. <PERSON_2>, your parcel is at <STREET_ADDRESS_2>."}


def test_report_names_the_new_detectors(redactor: Redactor) -> None:
    # Execute
    data, meta = redactor.redact_event(
        "TrajectoryRecorded", {"task": "Call Chidi Okafor at 221B Baker Street"}, {},
        session_key="s-report")
    report = meta["redaction"]
    # Assert: the detectors that ran, and what each redacted (no values)
    assert data["task"] == "Call <PERSON_1> at <STREET_ADDRESS_1>"
    assert {"PersonNameRecognizer", "StreetAddressRecognizer"} <= set(report["recognizers"])
    assert report["entities"] == {"PERSON": 1, "STREET_ADDRESS": 1}
    assert report["matched_by"] == {"PersonNameRecognizer": 1, "StreetAddressRecognizer": 1}
    assert report["ner"] is False
    assert "Chidi" not in json.dumps(report)


def test_switches_turn_the_detectors_off() -> None:
    # Prepare
    off = Redactor(RedactionConfig(person_names=False, street_addresses=False),
                   tenant_secret=SECRET)
    text = "Call Chidi Okafor at 221B Baker Street"
    # Execute / Assert
    assert off.redact_text(text, session_key="s") == text
    assert "PersonNameRecognizer" not in off.detector.recognizer_names


def test_lexicon_folds_and_weighs() -> None:
    lex = lexicon()
    assert fold("Björn") == "bjorn" and fold("Şükrü") == "sukru" and fold("Łukasz") == "lukasz"
    # a first name far more than a word, a word far more than a name
    assert lex.first("Chioma") >= 8 and lex.english("Chioma") == 0
    assert lex.english("Please") > lex.first("Please")
    assert lex.surname("Okonkwo")


def test_type_first_scan_matches_the_pattern_exactly() -> None:
    """The candidate scan in front of TYPE_FIRST_LAST_NUMBER finds what the pattern's own
    ``finditer`` finds, on text built to stress it: street types in every case, non-ASCII
    letters that fold case unusually (``ſ``, the Kelvin sign, ``İ``), punctuation right
    before a type, tabs instead of spaces, matches back to back."""
    import random

    from hermes_fed.privacy import address_recognizer as a

    rng = random.Random(11)
    types = sorted(a.TYPE_FIRST)
    pieces = ["Mayor", "Roma", "de", "la", "del", "São", "Marszałkowska", "of", "5", "10/4",
              "12b", "S/N", "s/n", "nº", "3º", "10115", "ſ", "\u212a", "İ", "ı", "ß", "(",
              ",", ".", "/", "-", "#", "\t", "’"]
    matched = 0
    for _ in range(6000):
        text = ""
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.4:
                word = rng.choice(types)
                word = rng.choice([word, word.upper(), word.capitalize(),
                                   word.replace("s", "ſ").replace("k", "\u212a")])
            else:
                word = rng.choice(pieces)
            text += word + rng.choice([" ", " ", "", ", ", "  ", "-"])
        expected = [m.span() for m in a.TYPE_FIRST_LAST_NUMBER.finditer(text)]
        assert [m.span() for m in a.type_first_matches(text)] == expected, text
        matched += len(expected)
    assert matched > 100  # the text did exercise the pattern
    # ``re`` folds the long s to "s": a word with a non-ASCII letter is left to it
    for text, street in (("Paſeo Mayor 5", "Paſeo Mayor 5"), ("PASEO Mayor 5", "PASEO Mayor 5"),
                         ("(calle Roma, 10)", "calle Roma, 10"), ("x-calle Roma 5", None),
                         ("calle\tRoma 5", None)):
        found = [m.group() for m in a.type_first_matches(text)]
        assert found == ([street] if street else []), text
