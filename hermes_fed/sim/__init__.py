"""hermes_fed.sim."""
