"""Where the workflow reads and writes: the one definition of the results and checkpoints layout.

The Snakemake rules (``rules/common.smk``) and the CLI's defaults both build their paths here, so a job's
declared inputs and outputs are exactly the files the code reads and writes.
"""

from __future__ import annotations

DEFAULT_CONFIG = "config/config.yaml"
