"""The response model measured as a model (a config's response_quality tables): per pool (linear / nonlinear
held-out suites), buffer size k and model, the mean RMSE, NLL and normalized improvement of the predicted best,
per-SCM means over replicates and seeds, and response_model minus response_gp with a bootstrap 95% CI over SCMs.
Usage: python scripts/response_table.py CONFIG"""

import glob
import sys

import numpy as np
import pandas as pd

config = sys.argv[1]
rq = pd.concat([pd.read_parquet(f) for f in glob.glob(f"results/{config}/response_quality/seed_*/*.parquet")])
rq["pool"] = np.where(rq["suite"].str.startswith("heldout-NL"), "nonlinear", "linear")
metrics = ["rmse", "nll", "best_improvement"]
per_scm = rq.groupby(["pool", "interventions", "model", "scm_id"])[metrics].mean()
print(per_scm.groupby(["pool", "model", "interventions"]).mean().round(3).unstack("interventions").to_string())
rng = np.random.default_rng(0)
for (pool, k), sub in per_scm.groupby(["pool", "interventions"]):
    diff = (sub.xs("response_model", level="model") - sub.xs("response_gp", level="model")).dropna()
    boots = np.array([diff.iloc[rng.integers(0, len(diff), len(diff))].mean() for _ in range(1000)])
    lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
    print(f"{pool:9s} k={k:2d} response_model - response_gp  "
          + "  ".join(f"{c} {diff[c].mean():+.3f} [{lo[i]:+.3f}, {hi[i]:+.3f}]" for i, c in enumerate(metrics)))
