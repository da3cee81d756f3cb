"""The node's OpenAI-compatible gateway (DESIGN.md §10): an agent changes its base URL and
its calls are routed by the node's traffic plan, captured through the redaction gate into
session trajectories, and answered with a trajectory id for feedback."""
