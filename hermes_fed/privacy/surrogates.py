"""Surrogates: placeholders replaced by made-up values of the same kind, for training.

The log holds ``<PERSON_1>``, ``<EMAIL_ADDRESS_2>``, ...; the model serves raw requests,
where users write real names, addresses and numbers. A model trained on placeholders has
never seen text shaped like what it serves (measured on the demo's first candidate: 18-20%
task success on clean requests, 3-4% on the same requests with the users' contact details
appended). Replacing each placeholder with a surrogate -- a fake value of its type, the
same one for every occurrence of that placeholder in a trajectory -- trains on text shaped
like real traffic while holding no real value (the "hide in plain sight" de-identification
of clinical text). Surrogates are drawn from small built-in pools and documentation ranges
(``example.com`` mail, ``555-01xx`` phone numbers, ``192.0.2.0/24`` addresses), seeded by
the trajectory id, so the same trajectory always gets the same text.

Types without a surrogate here (secrets, keys, card numbers) keep their placeholder: a model
has no business learning to write one.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from typing import Any

from hermes_fed.privacy.placeholders import PLACEHOLDER_RE

FIRST = ("Amara", "Bjorn", "Chen", "Dara", "Emeka", "Fatima", "Giulia", "Hiroshi", "Ines",
         "Jonas", "Kavya", "Liam", "Mei", "Nadia", "Oluwaseun", "Priya", "Quentin", "Rosa",
         "Sven", "Tariq", "Ulla", "Vikram", "Wanjiru", "Xavier", "Yara", "Zeynep", "Aiko",
         "Mateo", "Leila", "Dmitri")
LAST = ("Okafor", "Lindqvist", "Wang", "Novak", "Haddad", "Rossi", "Tanaka", "Moreau",
        "Kowalski", "Fernandes", "Nguyen", "Schmidt", "Mensah", "Ivanova", "Gupta", "Silva",
        "Yilmaz", "Kim", "Murphy", "Alvarez", "Suzuki", "Okonkwo", "Jansen", "Petrov",
        "Costa", "Ahmed", "Larsen", "Mwangi", "Dubois", "Park")
STREETS = ("Maple Avenue", "High Street", "Oak Lane", "Station Road", "Harbour Way",
           "Mill Street", "Park Road", "Church Lane")
CITIES = ("Springfield", "Riverton", "Lakeside", "Fairview", "Ashford", "Kingsbridge")


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _email(rng: random.Random) -> str:
    return (f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}"
            f"@example.{rng.choice(('com', 'org', 'net'))}")


def _phone(rng: random.Random) -> str:
    return f"+1 {rng.randint(200, 989)}-555-01{rng.randint(0, 99):02d}"


def _address(rng: random.Random) -> str:
    return f"{rng.randint(1, 240)} {rng.choice(STREETS)}, {rng.choice(CITIES)}"


SURROGATES: Mapping[str, Callable[[random.Random], str]] = {
    "PERSON": _name,
    "EMAIL_ADDRESS": _email,
    "PHONE_NUMBER": _phone,
    "LOCATION": lambda rng: rng.choice(CITIES),
    "STREET_ADDRESS": _address,
    "ADDRESS": _address,
    "ORGANIZATION": lambda rng: f"{rng.choice(LAST)} {rng.choice(('Ltd', 'GmbH', 'Inc', 'SA'))}",
    "IP_ADDRESS": lambda rng: f"192.0.2.{rng.randint(1, 254)}",
    "URL": lambda rng: f"https://example.com/{rng.choice(('docs', 'orders', 'help'))}",
}


class SurrogateMap:
    """One trajectory's surrogates: each placeholder gets one made-up value (seeded)."""

    def __init__(self, seed: str) -> None:
        self._seed = seed
        self._values: dict[str, str] = {}

    def value(self, placeholder: str, entity_type: str) -> str:
        if placeholder not in self._values:
            make = SURROGATES.get(entity_type)
            if make is None:
                self._values[placeholder] = placeholder
            else:
                digest = hashlib.sha256(f"{self._seed}/{placeholder}".encode()).digest()
                self._values[placeholder] = make(random.Random(digest))
        return self._values[placeholder]

    def text(self, text: str) -> str:
        """``text`` with every placeholder replaced by its surrogate."""
        if "<" not in text:
            return text
        return PLACEHOLDER_RE.sub(lambda m: self.value(m.group(0), m.group(1)), text)

    def walk(self, value: Any) -> Any:
        """Strings anywhere in a JSON-like value (tool-call arguments too) substituted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.walk(v) for v in value]
        return value


def with_surrogates(trajectory: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``trajectory`` whose messages, task and final response carry surrogates
    instead of placeholders (ids, task type and tools unchanged)."""
    surrogates = SurrogateMap(str(trajectory.get("trajectory_id", "")))
    out = dict(trajectory)
    for key in ("messages", "task", "final_response"):
        if key in out:
            out[key] = surrogates.walk(out[key])
    return out
