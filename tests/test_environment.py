"""The jobs' conda environment is the runtime part of the pinned lock; the README opens with the two commands."""

import re
import subprocess
import sys


def _pins(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\s*(?:- )?([A-Za-z0-9_.\-\[\]]+==[^\s#]+)", text, re.MULTILINE)}


def test_the_jobs_environment_is_the_runtime_part_of_the_lock(root):
    lock = _pins((root / "envs/requirements.lock").read_text())
    conda = _pins((root / "envs/acbo.yaml").read_text())
    assert conda and conda <= lock
    names = {p.split("==")[0].lower() for p in conda}
    for runtime in ("jax", "jaxlib", "flax", "optax", "networkx", "numpy", "pandas", "pyarrow", "altair",
                    "vl-convert-python", "msgpack", "pyyaml", "jsonschema"):
        assert runtime in names, runtime
    for tool in ("snakemake", "pytest", "hypothesis", "ruff", "snakefmt", "black"):  # development only
        assert tool not in names, tool
    lock_names = {p.split("==")[0].lower(): p for p in lock}
    assert lock_names["snakemake"].split("==")[1].startswith("9.")
    assert lock_names["altair"].split("==")[1].startswith("6.")


def test_the_jobs_environment_is_up_to_date(root, tmp_path):
    """envs/acbo.yaml is what scripts/write_conda_env.py makes of the lock and the package's dependencies now."""
    out = tmp_path / "acbo.yaml"
    subprocess.run([sys.executable, str(root / "scripts/write_conda_env.py"), "--out", str(out)], check=True)
    assert out.read_text() == (root / "envs/acbo.yaml").read_text()


def test_the_readme_opening_commands_are_make_targets(root):
    head = (root / "README.md").read_text().splitlines()[:12]
    commands = [line.split("#")[0].strip() for line in head if line.strip().startswith("make ")]
    assert commands[:2] == ["make run", "make test"]
    # each is a target that make can plan (a dry run executes nothing) and that runs the study or the tests
    # --no-print-directory: under `make test` (CI) the inner make is a sub-make and would frame its plan with
    # "Entering/Leaving directory" lines
    for command, runs in zip(commands[:2], ("snakemake", "pytest")):
        argv = [*command.split(), "-n", "--no-print-directory"]
        proc = subprocess.run(argv, cwd=root, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert runs in proc.stdout.splitlines()[-1], proc.stdout
