"""hermes-fed: a federated data flywheel for AI agents.

The core library. It imports neither ``tenant_node`` nor ``coordinator``.
"""

__version__ = "0.1.0"
