"""The workflow on a real single-node SLURM cluster (scripts/slurm/local_cluster.py) via profiles/slurm.

Every non-local job must go through sbatch (SLURM job ids in Snakemake's output, COMPLETED job records in
slurmctld, batch launches in slurmd's log), and the results must equal those of a local run.
"""

import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, copy_workflow, planned_jobs, require, run_folder, snakemake, study_definition

pytestmark = pytest.mark.slurm

CLUSTER_SCRIPT = ROOT / "scripts/slurm/local_cluster.py"
SLURM_PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # the daemons; a non-login PATH may lack these
SUITE_TARGETS = ("results/suites/train-L01.json", "results/suites/heldout-classic.json")
# measured seconds (the training log's wall_time): the only column that differs between two identical runs
TIMING_COLUMNS = ("wall_time",)
DAEMON_LOGS = ("slurmctld.log", "slurmd.log")
SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


@dataclass
class Cluster:
    dir: Path
    env: dict  # environment for Snakemake/sbatch: SLURM_CONF of this cluster, the venv's bin first on PATH

    def run(self, *args, check=True) -> subprocess.CompletedProcess:
        cmd = list(map(str, args))
        proc = subprocess.run(cmd, check=False, env=self.env, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, args))} failed: {proc.stderr}")
        return proc

    def job_record(self, slurm_id: str) -> dict[str, str]:
        """`scontrol show job` (slurmctld keeps finished jobs for MinJobAge seconds; no accounting needed)."""
        out = self.run("scontrol", "show", "job", "--oneliner", slurm_id).stdout
        return dict(re.findall(r"(\S+?)=(\S*)", out))


def cluster_cmd(action: str, d: Path, *options: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(CLUSTER_SCRIPT), action, str(d), *options]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)


@contextmanager
def local_cluster(d: Path):
    """A cluster started from ``d`` for the duration of the block, owned by this test process (a later run's
    start stops it if this run is killed before the block ends)."""
    started = cluster_cmd("start", d, "--owner", str(os.getpid()))
    try:
        if started.returncode != 0:
            pytest.fail(f"local SLURM cluster did not start:\n{started.stdout}\n{started.stderr}")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SNAKEMAKE_PROFILE"))}
        env["SLURM_CONF"] = str(d / "slurm.conf")
        # the venv's bin (acbo), then the cluster's client commands (they carry SLURM_CONF into jobs' srun)
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([venv_bin, str(d / "bin"), env.get("PATH", ""), *SBIN_DIRS])
        yield Cluster(d, env)
    finally:
        stopped = cluster_cmd("stop", d)
        assert stopped.returncode == 0, f"stopping the local SLURM cluster failed:\n{stopped.stderr}"


def claim_the_cluster_worker(tmp_path_factory) -> None:
    """Under `pytest -n N --dist loadgroup` every SLURM test runs on the first worker that starts the session's
    cluster (conftest's scheduler groups them); a second worker starting one means that grouping was lost."""
    from filelock import FileLock

    claim = run_folder(tmp_path_factory) / "slurm-worker"
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with FileLock(f"{claim}.lock"):
        if not claim.exists():
            claim.write_text(worker)
        first = claim.read_text()
    assert first == worker, f"SLURM tests ran on workers {first} and {worker}: conftest's grouping was lost"


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    require(all(shutil.which(p, path=search) for p in SLURM_PROGRAMS), "slurm (apt-get install slurm-wlm munge)")
    require(os.geteuid() == 0, "slurm (root, to run the cluster's daemons)")
    claim_the_cluster_worker(tmp_path_factory)
    with local_cluster(tmp_path_factory.mktemp("slurm-cluster")) as cluster:
        yield cluster


def failed_jobs_report(cluster: Cluster, workdir: Path) -> str:
    """The end of each SLURM job log under ``workdir`` and of the daemons' logs (a failed run's evidence)."""
    logs = sorted((workdir / "logs" / "slurm").rglob("*.log")) + [cluster.dir / "log" / n for n in DAEMON_LOGS]
    parts = []
    for path in logs:
        lines = path.read_text(errors="replace").splitlines() if path.exists() else ["(missing)"]
        parts.append(f"--- {path} (last 30 lines)\n" + "\n".join(lines[-30:]))
    return "\n".join(parts)


def run_on_slurm(cluster: Cluster, workdir: Path, *targets, timeout=900) -> tuple[str, dict[str, str]]:
    """Run ``targets`` with profiles/slurm; return Snakemake's output and {SLURM job id: its SLURM log}."""
    proc = snakemake(
        workdir,
        "--profile", "profiles/slurm",
        "--workflow-profile", "none",
        "--slurm-init-seconds-before-status-checks", "2",  # short jobs: poll early (MinJobAge is far above 3x)
        "--slurm-keep-successful-logs",
        *targets,
        env=cluster.env,
        timeout=timeout,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{output[-4000:]}\n{failed_jobs_report(cluster, workdir)}"
    submitted = {slurm_id: log for _, slurm_id, log in SUBMITTED.findall(output)}
    return output, submitted


def slurm_units(workdir: Path, submitted: dict[str, str]) -> dict[str, int]:
    """SLURM jobs per rule/group, from the plugin's log layout logs/slurm/{rule_R|group_G}/[wildcards/]ID.log."""
    units: dict[str, int] = {}
    for slurm_id, log in submitted.items():
        path = Path(log)
        assert path.name == f"{slurm_id}.log" and path.exists(), log
        unit = path.relative_to(workdir / "logs" / "slurm").parts[0]
        units[unit] = units.get(unit, 0) + 1
    return units


def assert_completed_on_cluster(cluster: Cluster, submitted: dict[str, str]) -> None:
    """Each submitted job is COMPLETED on the node in slurmctld's records, and slurmd launched it."""
    slurmd_log = (cluster.dir / "log" / "slurmd.log").read_text()
    for slurm_id in submitted:
        record = cluster.job_record(slurm_id)
        assert record["JobState"] == "COMPLETED", (slurm_id, record)
        assert record["ExitCode"] == "0:0", (slurm_id, record)
        assert record["Partition"] == "local" and record["NodeList"] == "localhost", record
        assert record["JobName"].startswith("acbo_"), record  # profiles/slurm's job name prefix
        assert f"Launching batch job {slurm_id} " in slurmd_log, slurm_id


def tree_files(base: Path, pattern: str) -> list[str]:
    return sorted(str(p.relative_to(base)) for p in base.rglob(pattern))


def test_cluster_is_up_and_memory_is_a_consumable(slurm_cluster):
    name, state, partition, cpus, memory = slurm_cluster.run("sinfo", "-h", "-N", "-o", "%N %T %P %c %m").stdout.split()
    assert (name, state, partition) == ("localhost", "idle", "local*")
    # the node is declared with the hardware slurmd detects on this machine
    detected = dict(f.split("=", 1) for f in slurm_cluster.run("slurmd", "-C").stdout.split() if "=" in f)
    assert (cpus, memory) == (detected["CPUs"], detected["RealMemory"])
    # CR_Core_Memory: a request above the node's memory is refused at submission
    too_big = slurm_cluster.run("sbatch", f"--mem={int(memory) + 1024}", "--wrap", "true", check=False)
    assert too_big.returncode != 0
    assert "memory" in too_big.stderr.lower() or "configuration" in too_big.stderr.lower(), too_big.stderr


def test_a_cluster_beside_another_runs_its_jobs_own_client_commands(slurm_cluster, tmp_path):
    """Two clusters on one machine: `srun` inside a job, started without SLURM_CONF as Snakemake's jobstep
    executor starts it, reaches the cluster that runs the job, on either (no shared config, socket or port)."""
    with local_cluster(tmp_path / "beside") as beside:
        for cluster in (slurm_cluster, beside):
            out = cluster.dir / "probe.out"
            script = "env -u SLURM_CONF srun -n1 sh -c 'echo $SLURM_CONF $SLURM_STEP_ID'"
            cluster.run("sbatch", "--wait", "--mem=100", "-o", out, "--wrap", script)
            assert out.read_text().split() == [str(cluster.dir / "slurm.conf"), "0"], out.read_text()


def test_suites_through_slurm_equal_local(slurm_cluster, tmp_path):
    remote = copy_workflow(tmp_path / "slurm")
    local = copy_workflow(tmp_path / "local")
    output, submitted = run_on_slurm(slurm_cluster, remote, *SUITE_TARGETS)
    assert len(submitted) == len(SUITE_TARGETS), output[-4000:]
    assert slurm_units(remote, submitted) == {"rule_suite": len(SUITE_TARGETS)}
    assert_completed_on_cluster(slurm_cluster, submitted)
    for slurm_id in submitted:
        record = slurm_cluster.job_record(slurm_id)
        assert "mem=1000M" in record["TRES"], record  # rule suite: mem_mb=1000 -> sbatch --mem 1000
        assert record["Comment"].startswith("rule_suite_wildcards_"), record
    assert "localrule suite:" not in output

    snakemake(local, *SUITE_TARGETS, env=slurm_cluster.env)  # same PATH, so the same `acbo`
    for target in SUITE_TARGETS:
        assert (remote / target).read_bytes() == (local / target).read_bytes(), target


@pytest.mark.slow
def test_study_through_slurm_equals_local(slurm_cluster, tiny_study, tmp_path):
    """A config of the tiny study run through SLURM equals the session's local run of it (conftest's tiny_study)."""
    pq = pytest.importorskip("pyarrow.parquet")
    target = "results/tiny_a/summary.html"
    remote = study_definition(tmp_path / "slurm")
    local = tiny_study
    planned = planned_jobs(remote, target)
    output, submitted = run_on_slurm(slurm_cluster, remote, target, timeout=1800)
    assert submitted, output[-4000:]
    # every job ran as a SLURM job (the summary too: its memory grows with the tables); none on the submitting host
    ran_locally = set(re.findall(r"^\s*localrule (\w+):", output, flags=re.MULTILINE))
    assert ran_locally == set(), ran_locally
    remote_rules = set(re.findall(r"^\s*rule (\w+):", output, flags=re.MULTILINE))
    assert remote_rules == {"suite", "train", "evaluate", "baselines", "plugin", "summary"}, remote_rules
    # one SLURM job per job of the plan
    units = slurm_units(remote, submitted)
    assert units == {f"rule_{rule}": n for rule, n in planned.items()}, units
    assert_completed_on_cluster(slurm_cluster, submitted)

    assert (remote / target).exists() and (local / target).exists()
    results_remote, results_local = remote / "results", local / "results"

    suites = tree_files(results_remote, "suites/*.json")  # the local study also ran its other configs
    assert suites and set(suites) <= set(tree_files(results_local, "suites/*.json"))
    for name in suites:
        assert (results_remote / name).read_bytes() == (results_local / name).read_bytes(), name

    tables = tree_files(results_remote, "*.parquet")
    assert set(tables) <= set(tree_files(results_local, "*.parquet"))
    assert {"tiny_a/summary.parquet", "tiny_a/train/seed_0.parquet", "plugins/greedy/heldout-L01.parquet"} <= set(
        tables), tables
    for name in tables:
        a, b = pq.read_table(results_remote / name), pq.read_table(results_local / name)
        assert a.schema.equals(b.schema), name
        timing = [c for c in TIMING_COLUMNS if c in a.column_names]
        a, b = a.drop_columns(timing), b.drop_columns(timing)
        differing = [c for c in a.column_names if not a[c].equals(b[c])]
        assert not differing, f"{name}: columns {differing} differ between the SLURM and the local run"
