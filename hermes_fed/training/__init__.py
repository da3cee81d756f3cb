"""hermes_fed.training."""
