"""hermes_fed.projections."""
