"""Federated rounds over a Flower Grid: one round loop, aggregation as a strategy,
DP as a wrapper, SecAgg+ as an exchange, A/B looks."""
