"""Faust agents: each module exposes ``register(ctx)`` (see streams.worker.REGISTRARS)."""
