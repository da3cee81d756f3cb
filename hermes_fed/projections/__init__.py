"""Read models rebuilt from the log, checkpointed by position (invariant 5)."""

from .runner import Handler, Projection, ProjectionRunner, checkpoints, table_rows

__all__ = ["Handler", "Projection", "ProjectionRunner", "checkpoints", "table_rows"]
