"""Reproducible benchmark workflow for amortized causal Bayesian optimization (ACBO)."""

# the one place of the version (pyproject.toml reads it): no package metadata lookup at every job's start-up
__version__ = "0.1.0"
