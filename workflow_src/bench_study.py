"""The study benchmark of ``make bench``: a whole Snakemake study from a cold compilation cache, read back
from its job logs.

Every job's log ends with a ``job stats:`` line (``jobstats``) and every evaluation/baseline log names its
shape bucket and program fingerprint (``evaluate.run.RunInfo``), so the figures come from what the jobs
themselves measured: study wall time, job-seconds, start-up and peak memory per rule, the number of distinct
compiled evaluation programs, and evaluation job times with a cold cache and again with a warm one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from .jobstats import read_summary_line
from .paths import LOGS

WORKFLOW_FILES = ("Snakefile", "rules", "config", "profiles", "envs", "report")


class ProgramLoad(NamedTuple):
    """How an evaluation job got its program, from its log line."""

    bucket: int
    program: str  # fingerprint
    from_cache: bool  # the executable came from the persistent compilation cache
    untraced: bool  # the program came from the program store


def read_job_logs(logs: Path) -> list[dict]:
    """One record per job log that ends with a job-stats line: command, wall, start-up, peak, program."""
    from .evaluate.run import read_run_infos

    jobs = []
    for path in sorted(logs.rglob("*.log")):
        text = path.read_text(errors="replace")
        stats = read_summary_line(text)
        if not stats:
            continue
        programs = [ProgramLoad(info.bucket, info.program, info.source == "persistent cache",
                                info.origin == "stored export") for info in read_run_infos(text)]
        jobs.append({
            "log": str(path.relative_to(logs)), **stats,
            **({"programs": programs} if programs else {}),
        })
    return jobs


def summarize_jobs(jobs: list[dict]) -> dict:
    """Job-seconds, job count, mean start-up and peak memory per command; distinct evaluation programs."""
    by_command: dict[str, dict] = {}
    for job in jobs:
        row = by_command.setdefault(job["command"], {"jobs": 0, "job_s": 0.0, "startup_s": 0.0, "peak_mib": 0})
        row["jobs"] += 1
        row["job_s"] += job["wall_s"]
        row["startup_s"] += job["startup_s"]
        row["peak_mib"] = max(row["peak_mib"], job["peak_mib"])
    for row in by_command.values():
        row["startup_s"] = round(row["startup_s"] / row["jobs"], 2)
        row["job_s"] = round(row["job_s"], 1)
    evaluation = [j for j in jobs if "programs" in j]
    loads = [p for j in evaluation for p in j["programs"]]
    return {
        "by_command": by_command,
        "programs": len({p.program for p in loads}),
        "buckets": sorted({p.bucket for p in loads}),
        "evaluation_jobs_from_cache": sum(all(p.from_cache for p in j["programs"]) for j in evaluation),
        "evaluation_jobs_untraced": sum(all(p.untraced for p in j["programs"]) for j in evaluation),
        "evaluation_job_s_mean": round(sum(j["wall_s"] for j in evaluation) / max(len(evaluation), 1), 2),
        "evaluation_job_s_max": round(max((j["wall_s"] for j in evaluation), default=0.0), 2),
    }


def bench_study(root: Path, work: Path, config_name: str, cores: int = 2) -> dict:
    """Run ``config_name``'s study in a fresh copy of the workflow with an empty compilation cache, then rerun
    its evaluation and baseline jobs with the cache warm."""
    study = work / f"study-{config_name}"
    study.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = root / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, study / name)
    snakemake = [str(Path(sys.executable).parent / "snakemake"), "--cores", str(cores)]
    env = {**os.environ, "ACBO_JAX_CACHE": str(work / f"cache-{config_name}")}
    target = f"results/{config_name}/summary.html"
    start = time.perf_counter()
    subprocess.run([*snakemake, target], cwd=study, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    cold = summarize_jobs(read_job_logs(study / LOGS))
    shutil.rmtree(study / LOGS)
    subprocess.run([*snakemake, "--forcerun", "evaluate", "baselines", "--", target], cwd=study, env=env, check=True,
                   capture_output=True)
    warm = summarize_jobs(read_job_logs(study / LOGS))
    return {"config": config_name, "cores": cores, "wall_s": round(wall, 1), "cold_cache": cold,
            "warm_cache_evaluation": {k: warm[k] for k in ("evaluation_job_s_mean", "evaluation_job_s_max",
                                                          "evaluation_jobs_from_cache", "evaluation_jobs_untraced",
                                                          "programs")}}


def planned_programs(suites: dict[str, tuple[int, int]]) -> dict:
    """Compiled evaluation programs a study needs, from each suite's largest SCM and term bucket (``(n_max,
    core.scm.term_bucket)``; 0 for a suite without nonlinear terms): a suite's SCMs are padded to a variable
    bucket and its nonlinear terms to a term bucket, and every distinct pair is one program for the policy and
    one for the baselines."""
    from .core.scm import bucket_size

    buckets = {name: (bucket_size(n), terms) for name, (n, terms) in suites.items()}
    return {"buckets": {name: list(b) for name, b in buckets.items()}, "programs": 2 * len(set(buckets.values()))}


def table(figures: dict) -> str:
    """A readable table of the study figures."""
    lines = []
    data = figures.get("study")
    if data:
        cold = data["cold_cache"]
        lines.append(f"study {data['config']} on {data['cores']} cores: {data['wall_s']:.1f} s wall, "
                     f"{cold['programs']} compiled evaluation programs (buckets {cold['buckets']})")
        lines.append(f"  {'rule':16s} {'jobs':>5s} {'job-s':>8s} {'start-up s':>11s} {'peak MiB':>9s}")
        for command, row in sorted(cold["by_command"].items()):
            lines.append(f"  {command:16s} {row['jobs']:5d} {row['job_s']:8.1f} {row['startup_s']:11.2f} "
                         f"{row['peak_mib']:9d}")
        warm = data["warm_cache_evaluation"]
        lines.append(f"  evaluation job s: cold cache mean {cold['evaluation_job_s_mean']:.1f} / max "
                     f"{cold['evaluation_job_s_max']:.1f}; warm cache mean {warm['evaluation_job_s_mean']:.1f} / max "
                     f"{warm['evaluation_job_s_max']:.1f} ({warm['evaluation_jobs_from_cache']} jobs from the cache, "
                     f"{warm['evaluation_jobs_untraced']} from the program store)")
    if "programs" in figures:
        plan = figures["programs"]
        shapes = sorted({tuple(b) for b in plan["buckets"].values()})
        lines.append(f"production evaluation programs: {plan['programs']} ((variable, term) buckets {shapes})")
    return "\n".join(lines)
