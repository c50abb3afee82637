"""Write envs/acbo.yaml (the conda spec for `--sdm conda`) from the pinned lock envs/requirements.lock."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = """\
# Conda environment for `snakemake --sdm conda`. Generated from requirements.lock by `make lock`;
# tests/test_environment.py checks that both list the same pins.
name: acbo
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
"""


def main() -> int:
    pins = [
        line.strip()
        for line in (ROOT / "envs/requirements.lock").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    body = "".join(f"      - {pin}\n" for pin in pins) + "      - -e ..\n"
    (ROOT / "envs/acbo.yaml").write_text(HEADER + body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
