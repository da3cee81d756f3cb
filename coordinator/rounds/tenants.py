"""Which tenant a Flower node id is: learned from the nodes' own replies.

Flower knows nodes by a random 64-bit id; operators know tenants. Every node reply names
its tenant in ``versions`` (``tenant-id``), and a failed handler's error text carries it
too (:func:`hermes_fed.federation.reasons.error_text`), so reports, lineage and A/B looks
name tenants. A node that never answered (a timeout, a SecAgg+ round whose replies are
masked) keeps its Flower id: ``node-<id>``. Two nodes that claim one tenant (the same
node TOML joined twice) are told apart by their ids rather than merged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flwr.app import Message

from hermes_fed.federation import messages as wire
from hermes_fed.federation.reasons import parse_tenant


def reply_tenant(reply: Message | None) -> str | None:
    """The tenant a reply (good or failed) names, or None."""
    if reply is None:
        return None
    if reply.has_error():
        return parse_tenant(reply.error.reason or "")
    if wire.VERSIONS not in reply.content:
        return None
    value = reply.content.config_records[wire.VERSIONS].get(wire.TENANT_ID)
    return value if isinstance(value, str) and wire.VERSION_ID.fullmatch(value) else None


class TenantNames:
    """Node id -> tenant id for one coordinator run."""

    def __init__(self) -> None:
        self._tenants: dict[int, str] = {}

    def learn(self, node: int, reply: Message | None) -> None:
        tenant = reply_tenant(reply)
        if tenant is not None:
            self._tenants[int(node)] = tenant

    def remember(self, node: int, tenant: str) -> None:
        self._tenants[int(node)] = tenant

    def learn_all(self, replies: Mapping[int, Message]) -> None:
        for node, reply in replies.items():
            self.learn(node, reply)

    def tenant(self, node: int) -> str | None:
        """The tenant id the node named, or None."""
        return self._tenants.get(int(node))

    def name(self, node: int) -> str:
        """How reports name the node: its tenant, ``tenant@node-<id>`` when two nodes named
        the same tenant, ``node-<id>`` when it never said."""
        tenant = self._tenants.get(int(node))
        if tenant is None:
            return f"node-{node}"
        if sum(1 for t in self._tenants.values() if t == tenant) > 1:
            return f"{tenant}@node-{node}"
        return tenant

    def names(self, nodes: Iterable[int]) -> list[str]:
        return [self.name(n) for n in nodes]
