"""Running the federation: Flower processes, the local federation, certificates, wire capture."""
