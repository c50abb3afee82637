"""Errors of checkpoint files (kept apart so the CLI can catch them without importing JAX)."""


class CheckpointError(ValueError):
    pass
