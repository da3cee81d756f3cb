"""Serving: OpenAI wire shapes, traffic-plan routing, and the model servers behind the gateway."""
