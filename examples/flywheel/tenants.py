"""Synthetic tenants: each its own non-IID task mix, data size, lookup table and people.

User turns carry planted PII (an email, a phone number, a name from the tenant's deny
list) so that the redaction gate is exercised on every round; the task request itself
stays PII-free so a verifier can still read it after redaction.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from examples.flywheel.tasks import FAMILIES, TaskInstance, family

_FIRST = ("Maria", "Jonas", "Aiko", "Pedro", "Fatima", "Oleg", "Chloe", "Ravi", "Ingrid",
          "Kwame", "Lucia", "Tomasz")
_LAST = ("Lopez", "Berg", "Tanaka", "Silva", "Haddad", "Petrov", "Martin", "Iyer", "Dahl",
         "Mensah", "Rossi", "Nowak")


@dataclass(frozen=True, slots=True)
class PlantedPII:
    """The PII planted in one user turn (kept only in memory, to check redaction)."""

    email: str | None = None
    phone: str | None = None
    name: str | None = None

    def values(self) -> tuple[str, ...]:
        return tuple(v for v in (self.email, self.phone, self.name) if v)

    def masked(self, text: str) -> str:
        """``text`` with each planted value replaced by a placeholder of its type, as the
        node's redaction gate writes it (``<EMAIL_ADDRESS_1>``, ...)."""
        for value, kind in ((self.email, "EMAIL_ADDRESS"), (self.phone, "PHONE_NUMBER"),
                            (self.name, "PERSON")):
            if value:
                text = text.replace(value, f"<{kind}_1>")
        return text


@dataclass(frozen=True, slots=True)
class SimTenant:
    """A synthetic tenant of the flywheel simulation."""

    tenant_id: str = field(metadata={"help": "Tenant id (also seeds its people)."})
    task_mix: Mapping[str, float] = field(metadata={
        "help": "Task type -> relative frequency of its users' requests (non-IID)."})
    sessions_per_round: int = field(default=32, metadata={
        "help": "Sessions its users run per flywheel round (its data size)."})
    table: str = field(default="", metadata={
        "help": "Name of its lookup table (a-z, 0-9, _); default <tenant>_table."})
    golden_per_type: int = field(default=4, metadata={
        "help": "Cold-start golden trajectories per task type of its mix."})
    pii_rate: float = field(default=0.7, metadata={
        "help": "Share of user turns that carry planted PII."})
    users: int = field(default=20, metadata={"help": "Distinct user refs of the tenant."})

    def __post_init__(self) -> None:
        if not self.tenant_id or not self.tenant_id.replace("-", "").isalnum():
            raise ValueError(f"SimTenant.tenant_id must be alphanumeric (and -), got "
                             f"{self.tenant_id!r}")
        if not self.task_mix or any(t not in FAMILIES for t in self.task_mix):
            raise ValueError(f"SimTenant.task_mix must name known task types "
                             f"{sorted(FAMILIES)}, got {dict(self.task_mix)!r}")
        if any(not (w > 0) for w in self.task_mix.values()):
            raise ValueError(f"SimTenant.task_mix weights must be > 0, got "
                             f"{dict(self.task_mix)!r}")
        for name in ("sessions_per_round", "users"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SimTenant.{name} must be an integer >= 1, got "
                                 f"{getattr(self, name)!r}")
        if not isinstance(self.golden_per_type, int) or self.golden_per_type < 0:
            raise ValueError(f"SimTenant.golden_per_type must be an integer >= 0, got "
                             f"{self.golden_per_type!r}")
        if not 0.0 <= self.pii_rate <= 1.0:
            raise ValueError(f"SimTenant.pii_rate must be in [0, 1], got {self.pii_rate!r}")
        table = self.table or f"{self.tenant_id.replace('-', '_')}_table"
        if not table or not all(c.islower() or c.isdigit() or c == "_" for c in table):
            raise ValueError(f"SimTenant.table must be lower-case letters, digits and _, got "
                             f"{table!r}")
        object.__setattr__(self, "table", table)

    @property
    def task_types(self) -> tuple[str, ...]:
        return tuple(sorted(self.task_mix))

    def people(self) -> tuple[tuple[str, str], ...]:
        """The tenant's users as (first, last) names, fixed by the tenant id."""
        rng = random.Random(f"people/{self.tenant_id}")
        return tuple((rng.choice(_FIRST), rng.choice(_LAST)) for _ in range(self.users))

    def deny_terms(self) -> tuple[str, ...]:
        """Names of its people: the tenant-wide redaction deny list."""
        return tuple(sorted({f"{first} {last}" for first, last in self.people()}
                            | {last for _, last in self.people()}))

    def draw_tasks(self, n: int, seed: int) -> list[TaskInstance]:
        """``n`` tasks drawn from the tenant's mix (seeded; invariant S2)."""
        rng = random.Random(f"tasks/{self.tenant_id}/{seed}")
        types = self.task_types
        weights = [self.task_mix[t] for t in types]
        return [family(t).generate(rng, self.table)
                for t in rng.choices(types, weights=weights, k=n)]

    def user_turn(self, request: str, rng: random.Random) -> tuple[str, str, PlantedPII]:
        """``(user_ref, text, planted)``: the request, maybe followed by PII of the user."""
        index = rng.randrange(self.users)
        first, last = self.people()[index]
        user_ref = f"{self.tenant_id}-user-{index}"
        if rng.random() >= self.pii_rate:
            return user_ref, request, PlantedPII()
        kind = rng.choice(("email", "phone", "name"))
        if kind == "email":
            email = f"{first.lower()}.{last.lower()}@example.com"
            return user_ref, f"{request} Send it to {email} please.", PlantedPII(email=email)
        if kind == "phone":
            phone = f"+1 415 555 {rng.randint(1000, 9999)}"
            return user_ref, f"{request} Call me at {phone} if needed.", PlantedPII(phone=phone)
        name = f"{first} {last}"
        return user_ref, f"{request} Thanks, {name}.", PlantedPII(name=name)


def default_tenants() -> tuple[SimTenant, ...]:
    """Three tenants with non-IID mixes; ``initech`` has little data (the long tail)."""
    return (
        SimTenant("acme", {"arithmetic": 0.5, "unit_conversion": 0.3, "table_lookup": 0.1,
                           "date_arithmetic": 0.1}, sessions_per_round=32, table="acme_parts"),
        SimTenant("globex", {"unit_conversion": 0.4, "date_arithmetic": 0.4,
                             "arithmetic": 0.1, "table_lookup": 0.1},
                  sessions_per_round=32, table="globex_stock"),
        SimTenant("initech", {"table_lookup": 0.5, "date_arithmetic": 0.3,
                              "arithmetic": 0.2}, sessions_per_round=6, golden_per_type=2,
                  table="initech_prices"),
    )
