"""Benchmarks (``acbo bench``, ``make bench``): not tests; they write JSON figures under results/bench/.

- ``suites``: time to generate every suite the production config needs;
- ``train``: per experiment setting (``TRAIN_SETTINGS``), a whole training run (seed 0) in a fresh
  ``acbo train`` process, with a cold and then a warm persistent cache: episodes (policy updates), SCM
  episodes and intervention steps per second (the episodes that compiled a shape bucket's programs left out),
  by bucket, the compile time, the run's time and its peak memory;
- ``evaluate``: time of the baselines and of the policy evaluation on one production held-out suite;
- ``programs``: the compiled evaluation programs the production study needs (variable and term buckets of
  its suites);
- ``study``: a whole debug study from a cold compilation cache, read from its job logs (``bench_study``);
- ``nonlinear_suites``: per level, the time (wall and CPU, oracle included) to generate ``heldout-NLnn`` and
  the share of its SCMs whose best intervention (the oracle action) is interior, the share with at least one
  interior variable (every kept SCM) and the mean share of interior variables; and ``heldout-bnlearn-head``
  when pgmpy is installed;
- ``causal_bo``: a ``causal_bo`` job alone on ``heldout-NL10`` (32 SCMs) on one core, cold and warm cache;
- ``response_quality``: an ``acbo response-quality`` job on ``heldout-NL10`` (32 SCMs, the protocol's replicates and
  buffer sizes) for a small checkpoint with a response model (untrained: the time does not depend on what it
  learnt), on one core, cold and warm cache;
- ``acquisition``: per shape bucket, milliseconds per observation (a full buffer, ``ACQUISITION_BATCH`` of them
  vmapped, as an evaluation chunk runs them) of the production network's two costs per step: its response
  model's expected-improvement search (``amortized_ei``) and that search followed by the policy network's
  forward pass (``greedy``; the observation's features are not timed), in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import paths
from .atomic import atomic_write_text
from .bench_study import bench_study, planned_programs, table
from .config import load_config, suite_slice
from .jobstats import read_summary_line
from .suites.build import build_suite
from .suites.generators import LEVELS


def _run(cmd: list[str], env: dict) -> dict:
    """Run an ``acbo`` command; return its wall time and peak resident memory (from its own job stats line: the
    rusage of a child forked from this process would count this process's memory too)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}")
    return {"wall_s": time.perf_counter() - start, "peak_rss_mib": read_summary_line(proc.stdout)["peak_mib"]}


def _acbo(*args) -> list[str]:
    return [sys.executable, "-m", "workflow_src", *map(str, args)]


def bench_suites(cfg: dict, config_path: str, suites_dir: Path) -> dict:
    names = sorted({suite for lv in cfg["experiments"]["production"]["levels"] for suite in paths.train_suites(lv)}
                   | set(cfg["experiments"]["production"]["eval_suites"]))
    start = time.perf_counter()
    for name in names:
        build_suite(suite_slice(cfg, name), paths.suite_file(name, suites_dir))
    return {"suites": len(names), "seconds": round(time.perf_counter() - start, 2)}


def bench_nonlinear_suites(cfg: dict, suites_dir: Path, levels=None, bnlearn: bool = True) -> dict:
    from .suites.bnlearn import pgmpy_data_dir
    from .suites.oracle import interior_variables
    from .suites.suite_io import load_suite

    rows = []
    for level in levels or range(1, len(LEVELS) + 1):
        name = f"heldout-NL{level:02d}"
        spec = suite_slice(cfg, name)
        wall, cpu = time.perf_counter(), time.process_time()
        build_suite(spec, paths.suite_file(name, suites_dir))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        scms = load_suite(paths.suite_file(name, suites_dir)).scms
        inside = [interior_variables(s, s.oracle, spec["nonlinear"]["interior_margin"]) for s in scms]
        rows.append({
            "suite": name, "scms": len(scms), "max_nodes": max(s.n for s in scms), "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "oracle_interior": round(float(np.mean([m[s.oracle.variable] for m, s in zip(inside, scms)])), 3),
            "any_interior": round(float(np.mean([m.any() for m in inside])), 3),
            "interior_variables": round(float(np.mean([m.sum() / s.intervenable.sum() for m, s in zip(inside, scms)])),
                                        3),
        })
    out = {"levels": rows}
    if bnlearn and pgmpy_data_dir() is not None:
        wall, cpu = time.perf_counter(), time.process_time()
        build_suite(suite_slice(cfg, "heldout-bnlearn-head"), paths.suite_file("heldout-bnlearn-head", suites_dir))
        out["bnlearn_head"] = {"wall_s": round(time.perf_counter() - wall, 2),
                               "cpu_s": round(time.process_time() - cpu, 2)}
    return out


def nonlinear_table(data: dict) -> str:
    cols = ("suite", "max_nodes", "wall_s", "cpu_s", "oracle_interior", "any_interior", "interior_variables")
    lines = ["nonlinear suites: " + "  ".join(cols)]
    lines += ["  " + "  ".join(str(row[c]) for c in cols) for row in data["levels"]]
    if "bnlearn_head" in data:
        lines.append(f"  heldout-bnlearn-head: {data['bnlearn_head']}")
    return "\n".join(lines)


def _episode_durations(log: pd.DataFrame, level_bucket: dict) -> tuple[pd.Series, pd.Series]:
    """Each episode's duration, and whether it compiled: the first episode of each shape bucket does."""
    duration = log["wall_time"].diff().fillna(log["wall_time"].iloc[0])
    bucket = log["level"].map(level_bucket)
    return duration, ~bucket.duplicated()


# quick_test and production; and the seed system's settings (per-step groups of 10 actions over 30 interventions,
# one SCM per update), which the training-throughput target of the speed issue names
TRAIN_SETTINGS = ("quick_test", "production", "ablation_seed_system")


def bench_train(cfg: dict, config_path: str, suites_dir: Path, work: Path, threads: int) -> dict:
    from .train.loop import Pools

    out = {}
    for name in TRAIN_SETTINGS:
        exp = cfg["experiments"][name]
        levels = exp["levels"]
        level_bucket = Pools(paths.train_suite_files(levels, suites_dir), levels).level_bucket
        cache = work / f"cache-{name}"
        runs = {}
        for temperature in ("cold", "warm"):
            ckpt = work / f"{name}-{temperature}"
            env = {**os.environ, "ACBO_JAX_CACHE": str(cache)}
            res = _run(_acbo("train", "--experiment", name, "--seed", 0, "--config", config_path, "--suites-dir",
                             suites_dir, "--checkpoint-dir", ckpt, "--log-table", ckpt / "log.parquet",
                             "--no-progress", "--threads", threads), env)
            log = pd.read_parquet(ckpt / "log.parquet")
            duration, compiled = _episode_durations(log, level_bucket)
            steady = duration[~compiled].groupby(log["level"].map(level_bucket)[~compiled])
            runs[temperature] = {**res, "compile_s": float(duration[compiled].sum()),
                                 "train_s": float(log["wall_time"].iloc[-1]),
                                 "episodes_per_s": float((~compiled).sum() / duration[~compiled].sum()),
                                 "by_bucket": {int(b): round(1 / d.mean(), 2) for b, d in steady}}
        warm = runs["warm"]
        rate = warm["episodes_per_s"]  # policy updates per second, compiling episodes left out
        scm_rate = rate * exp["training"]["scms_per_update"]
        steps = exp["training"]["n_interventions"]
        out[name] = {
            "episodes": exp["episodes"],
            "buckets": sorted(set(level_bucket[lv] for lv in log["level"].unique())),
            "episodes_per_s": round(rate, 2),
            "episodes_per_s_by_bucket": warm["by_bucket"],
            "scm_episodes_per_s": round(scm_rate, 2),
            "intervention_steps_per_s": round(scm_rate * steps, 1),
            "group_actions_per_s": round(scm_rate * steps * exp["training"]["group_size"], 1),
            "compile_s_cold_cache": round(runs["cold"]["compile_s"], 2),
            "compile_s_warm_cache": round(warm["compile_s"], 2),
            "train_s_cold_cache": round(runs["cold"]["train_s"], 1),
            "train_s_warm_cache": round(warm["train_s"], 1),
            "process_s_cold_cache": round(runs["cold"]["wall_s"], 2),
            "peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs.values()), 1),
        }
    return out


def bench_evaluate(cfg: dict, config_path: str, suites_dir: Path, work: Path, threads: int) -> dict:
    suite = suites_dir / "heldout-L05.json"
    ckpt = work / "production-warm" / "final.ckpt"
    result = {"suite": suite.stem}
    res = _run(_acbo("baselines", "--suite", suite, "--out", work / "baselines.parquet", "--config", config_path,
                     "--threads", threads), dict(os.environ))
    result["baselines_s"] = round(res["wall_s"], 2)
    if ckpt.exists():
        res = _run(_acbo("evaluate", "--checkpoint", ckpt, "--suite", suite, "--out", work / "eval.parquet",
                         "--config", config_path, "--threads", threads), dict(os.environ))
        result["policy_s"] = round(res["wall_s"], 2)
        result["policy_peak_rss_mib"] = round(res["peak_rss_mib"], 1)
    return result


def _suite(cfg: dict, suites_dir: Path, suite: str) -> Path:
    """The suite file ``suite`` in ``suites_dir``, built from the config when it is not there yet."""
    path = paths.suite_file(suite, suites_dir)
    if not Path(path).exists():
        build_suite(suite_slice(cfg, suite), path)
    return Path(path)


def bench_causal_bo(cfg: dict, suites_dir: Path, work: Path, suite: str = "heldout-NL10") -> dict:
    """A ``causal_bo`` job alone on one 32-SCM nonlinear held-out suite, on one core (target: 30 s), twice: the
    first run fills the persistent compilation cache, the second reads it."""
    path = _suite(cfg, suites_dir, suite)
    result = {"suite": suite}
    for run in ("first_s", "second_s"):
        res = _run(_acbo("baselines", "--suite", path, "--methods", "causal_bo",
                         "--out", work / "causal_bo.parquet", "--threads", 1), dict(os.environ))
        result[run] = round(res["wall_s"], 2)
        result["peak_rss_mib"] = round(res["peak_rss_mib"], 1)
    return result


def bench_response_quality(cfg: dict, suites_dir: Path, work: Path, suite: str = "heldout-NL10") -> dict:
    """An ``acbo response-quality`` job alone on one 32-SCM nonlinear held-out suite, on one core, twice (cold, then
    warm persistent cache), for the production network with a response model, its parameters as initialized."""
    import jax

    from .policy import checkpoint
    from .policy.network import init_params, make_policy
    from .policy.spec import architecture

    policy = {**cfg["experiments"]["production"]["policy"], "response_model": True}
    ckpt = work / "response_quality" / "final.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    params = init_params(make_policy(policy), jax.random.PRNGKey(0))
    checkpoint.save(ckpt, {"architecture": architecture(policy), "config_hash": "bench", "episode": 0},
                    {"params": params})
    path = _suite(cfg, suites_dir, suite)
    env = {**os.environ, "ACBO_JAX_CACHE": str(work / "cache-response_quality")}
    ev = cfg["evaluation"]
    result = {"suite": suite, "replicates": ev["response_replicates"], "sizes": ev["response_sizes"]}
    for run in ("cold_s", "warm_s"):
        res = _run(_acbo("response-quality", "--checkpoint", ckpt, "--suite", path, "--out", work / "rq.parquet",
                         "--threads", 1), env)
        result[run] = round(res["wall_s"], 2)
        result["peak_rss_mib"] = round(res["peak_rss_mib"], 1)
    return result


BENCHMARKS = ("suites", "train", "evaluate", "programs", "study", "nonlinear_suites", "causal_bo", "response_quality",
              "acquisition")
ACQUISITION_BATCH = 20  # observations per call (an evaluation chunk of 2 SCMs x 10 episodes at 64 variables)
ACQUISITION_REPEATS = 20
STUDY_CONFIG = "debug"


def production_programs(cfg: dict, suites_dir: Path) -> dict:
    from .core.scm import term_bucket
    from .suites.suite_io import load_suite

    suites = {n: load_suite(suites_dir / f"{n}.json").scms for n in cfg["experiments"]["production"]["eval_suites"]}
    return planned_programs({n: (max(s.n for s in scms), term_bucket(scms)) for n, scms in suites.items()})


def bench_acquisition(cfg: dict) -> dict:
    """Per shape bucket, ms per observation of the production network's response-model search, and of that search
    followed by the policy network, for initialized parameters on random full observations (the time depends on
    the shapes alone), jitted and vmapped over ``ACQUISITION_BATCH`` observations."""
    import jax
    import jax.numpy as jnp

    from .policy.features import Observation
    from .policy.network import init_params, make_policy, response_acquisition, with_acquisition
    from .policy.spec import SAMPLE_CHANNELS, variable_channels

    exp = cfg["experiments"]["production"]
    policy = make_policy(exp["policy"])
    params = init_params(policy, jax.random.PRNGKey(0))
    samples = cfg["evaluation"]["n_obs"] + cfg["evaluation"]["interventions"]  # an episode's full buffer
    rng = np.random.default_rng(0)
    channels = variable_channels(policy.bandit_features, policy.curve_features, policy.budget_feature)

    def greedy(obs):
        return policy.apply(params, with_acquisition(policy, params, obs, obs.action_mask)).logits

    result = {"batch": ACQUISITION_BATCH, "samples": samples}
    b = ACQUISITION_BATCH
    for bucket in (8, 16, 32, 64):
        obs = Observation(jnp.asarray(rng.normal(size=(b, samples, bucket, SAMPLE_CHANNELS)), jnp.float32),
                          jnp.asarray(rng.normal(size=(b, bucket, channels)), jnp.float32),
                          jnp.ones((b, samples), bool), jnp.ones((b, bucket), bool), jnp.ones((b, bucket), bool),
                          jnp.zeros((b, bucket, 2)))
        for name, fn in (("amortized_ei", lambda o: response_acquisition(policy, params, o)), ("greedy", greedy)):
            run = jax.jit(jax.vmap(fn))
            jax.block_until_ready(run(obs))  # compile
            start = time.perf_counter()
            for _ in range(ACQUISITION_REPEATS):
                out = run(obs)
            jax.block_until_ready(out)
            result[f"{name}_ms_{bucket}"] = round((time.perf_counter() - start) / ACQUISITION_REPEATS / b * 1e3, 3)
    return result


def run_bench(config_path: str | Path, only: set[str], out_dir: Path, threads: int) -> None:
    """Run the benchmarks named in ``only`` on the config at ``config_path``; one JSON file per benchmark."""
    cfg = load_config(config_path)
    with tempfile.TemporaryDirectory(prefix="acbo-bench-") as tmp:
        work = Path(tmp)
        suites_dir = work / "suites"
        figures = {}
        if only & {"suites", "train", "evaluate", "programs"}:  # the others build the one suite they time
            figures["suites"] = bench_suites(cfg, config_path, suites_dir)
        if "train" in only or "evaluate" in only:
            figures["train"] = bench_train(cfg, config_path, suites_dir, work, threads)
        if "evaluate" in only:
            figures["evaluate"] = bench_evaluate(cfg, config_path, suites_dir, work, threads)
        if "programs" in only:
            figures["programs"] = production_programs(cfg, suites_dir)
        if "study" in only:
            figures["study"] = bench_study(Path.cwd(), work, STUDY_CONFIG)
        if "nonlinear_suites" in only:
            figures["nonlinear_suites"] = bench_nonlinear_suites(cfg, suites_dir)
        if "causal_bo" in only:
            figures["causal_bo"] = bench_causal_bo(cfg, suites_dir, work)
        if "response_quality" in only:
            figures["response_quality"] = bench_response_quality(cfg, suites_dir, work)
        if "acquisition" in only:
            figures["acquisition"] = bench_acquisition(cfg)
    figures["machine"] = {"cpus": os.cpu_count(), "threads": threads}
    for name, data in figures.items():
        if name != "machine" and name in only:
            atomic_write_text(out_dir / f"{name}.json", json.dumps({**data, "machine": figures["machine"]}, indent=1))
            print(f"{out_dir / (name + '.json')}: {json.dumps(data)}")
    print(table({k: v for k, v in figures.items() if k in only}))
    if "nonlinear_suites" in only:
        print(nonlinear_table(figures["nonlinear_suites"]))
