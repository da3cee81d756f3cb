"""Examples built on hermes-fed; not part of the product (nothing in hermes_fed,
tenant_node or coordinator imports them)."""
