"""The pinned lock and the conda spec list the same packages; the README opens with the two commands."""

import re
import subprocess


def _pins(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\s*(?:- )?([A-Za-z0-9_.\-\[\]]+==[^\s#]+)", text, re.MULTILINE)}


def test_conda_spec_matches_lock(root):
    lock = _pins((root / "envs/requirements.lock").read_text())
    conda = _pins((root / "envs/acbo.yaml").read_text())
    assert lock and lock == conda
    names = {p.split("==")[0].lower() for p in lock}
    for required in ("snakemake", "jax", "flax", "optax", "networkx", "pandas", "pyarrow", "altair",
                     "vl-convert-python", "pytest", "hypothesis"):
        assert required in names, required
    snakemake = next(p for p in lock if p.lower().startswith("snakemake=="))
    altair = next(p for p in lock if p.lower().startswith("altair=="))
    assert snakemake.split("==")[1].startswith("9.") and altair.split("==")[1].startswith("6.")


def test_the_readme_opening_commands_are_make_targets(root):
    head = (root / "README.md").read_text().splitlines()[:12]
    commands = [line.split("#")[0].strip() for line in head if line.strip().startswith("make ")]
    assert commands[:2] == ["make run", "make test"]
    # each is a target that make can plan (a dry run executes nothing) and that runs the study or the tests
    for command, runs in zip(commands[:2], ("snakemake", "pytest")):
        proc = subprocess.run([*command.split(), "-n"], cwd=root, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert runs in proc.stdout.splitlines()[-1], proc.stdout
