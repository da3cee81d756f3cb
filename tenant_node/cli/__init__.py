"""The ``hermes-fed node`` command group and its sub-commands."""
