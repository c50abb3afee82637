"""The response model measured as a model, as a config's summary holds it (``results/CONFIG/summary.parquet``, the
rows the summary page's section is drawn from): per pool (all linear / all nonlinear held-out SCMs), buffer size k
and model, the mean RMSE, NLL and normalized improvement of the predicted best, and response_model minus
response_gp with the summary's 95% CI (stratified bootstrap over SCMs and seeds, ``report.bootstrap``).
Usage: python scripts/response_table.py CONFIG"""

import sys

import pandas as pd

from workflow_src.report.scopes import POOLED_SCOPES

config = sys.argv[1]
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
