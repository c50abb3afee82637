"""Reproducible benchmark workflow for amortized causal Bayesian optimization (ACBO)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("acbo-workflow")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
