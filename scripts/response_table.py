"""The response model measured as a model, as a config's summary holds it (``results/CONFIG/summary.parquet``, the
rows the summary page's section is drawn from): per pool (all linear / all nonlinear held-out SCMs), buffer size k
and model, the mean RMSE, NLL and normalized improvement of the predicted best, and response_model minus
response_gp with the summary's 95% CI (stratified bootstrap over SCMs and seeds, ``report.bootstrap``).
Usage: python scripts/response_table.py CONFIG

With two configs (the same suites and seeds), one config's response model against the other's instead: per pool
and k, the second minus the first, per-SCM means over seeds, with a bootstrap 95% CI over SCMs (as
``scripts/paired_table.py`` forms them; heldout-classic is linear, heldout-cbo nonlinear).
Usage: python scripts/response_table.py CONFIG_A,CONFIG_B"""

import glob
import sys

import numpy as np
import pandas as pd

from workflow_src.report.scopes import POOLED_SCOPES

METRICS = ["rmse", "nll", "best_improvement"]


def one_config(config: str) -> None:
    summary = pd.read_parquet(f"results/{config}/summary.parquet")
    pooled = summary[summary["kind"].isin(["response_quality", "response_paired"]) & summary["seed"].isna()
                     & summary["suite"].isin(POOLED_SCOPES)]
    pooled = pooled.assign(k=pooled["step"].astype(int))
    quality = pooled[pooled["kind"] == "response_quality"]
    print(quality.pivot_table(index=["suite", "method"], columns=["metric", "k"], values="mean").round(3).to_string())
    paired = pooled[pooled["kind"] == "response_paired"].sort_values(["suite", "k", "metric"])
    for (pool, k), rows in paired.groupby(["suite", "k"], sort=False):
        print(f"{pool:18s} k={k:2d} response_model - response_gp  "
              + "  ".join(f"{r.metric} {r.mean:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]" for r in rows.itertuples()))


def per_scm(config: str) -> pd.DataFrame:
    """The response model's metrics per pool, k and SCM, means over seeds and replicates."""
    rows = pd.concat(pd.read_parquet(f) for f in glob.glob(f"results/{config}/response_quality/seed_*/*.parquet"))
    rows = rows[rows["model"] == "response_model"]
    rows = rows.assign(pool=np.where(rows["suite"].str.startswith("heldout-NL") | (rows["suite"] == "heldout-cbo"),
                                     "nonlinear", "linear"))
    return rows.groupby(["pool", "interventions", "suite", "scm_id"])[METRICS].mean()


def two_configs(first: str, second: str) -> None:
    diff = (per_scm(second) - per_scm(first)).dropna()
    rng = np.random.default_rng(0)
    print(f"{second} - {first}, the response model")
    for (pool, k), rows in diff.groupby(["pool", "interventions"]):
        boots = np.array([rows.iloc[rng.integers(0, len(rows), len(rows))].mean() for _ in range(1000)])
        lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
        print(f"{pool:9s} k={k:2d} ({len(rows)} SCMs)  "
              + "  ".join(f"{m} {rows[m].mean():+.3f} [{lo[i]:+.3f}, {hi[i]:+.3f}]" for i, m in enumerate(METRICS)))


configs = sys.argv[1].split(",")
if len(configs) == 2:
    two_configs(*configs)
else:
    one_config(configs[0])
