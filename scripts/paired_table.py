"""Per pool (linear / nonlinear held-out suites) and method: the per-step mean normalized improvement and the
best-so-far after 10 and 20 interventions, per-SCM means over episodes and seeds, and the paired difference of
one method against every other with a bootstrap 95% CI over SCMs. Usage:
python scripts/paired_table.py CONFIG[,CONFIG...] [METHOD]
With several configs (the same suites) each policy method is named CONFIG:METHOD, so one config's method is paired
with another's: python scripts/paired_table.py amortized,amortized_response_steps_3000 \
amortized_response_steps_3000:policy_amortized_ei"""

import glob
import sys

import numpy as np
import pandas as pd

configs = sys.argv[1].split(",")
focus = sys.argv[2] if len(sys.argv) > 2 else "policy_amortized_ei"
evals = []
for config in configs:
    ev = pd.concat([pd.read_parquet(f) for f in glob.glob(f"results/{config}/eval/seed_*/*.parquet")])
    evals.append(ev.assign(method=config + ":" + ev["method"]) if len(configs) > 1 else ev)
ev = pd.concat(evals)
suites = set(ev["suite"])
bl = pd.concat([pd.read_parquet(f) for f in glob.glob("results/baselines/*.parquet")])
bl = bl[bl["suite"].isin(suites) & (bl["method"] != "oracle")]
rows = pd.concat([ev, bl.assign(seed=-1)])
rows = rows.sort_values("step")
rows["best"] = rows.groupby(["method", "seed", "suite", "scm_id", "episode"])["norm_improvement"].cummax()
per_ep = rows.groupby(["method", "seed", "suite", "scm_id", "episode"]).agg(
    per_step=("norm_improvement", "mean"), best10=("best", lambda b: b.iloc[9]), best20=("best", lambda b: b.iloc[19])
)
per_scm = per_ep.groupby(["method", "suite", "scm_id"]).mean()
per_seed = per_ep.groupby(["method", "seed", "suite"]).mean()
rng = np.random.default_rng(0)


def in_pool(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """The rows of the suites of one pool (heldout-classic belongs to the linear one)."""
    suites = frame.index.get_level_values("suite")
    return frame[[s.startswith(prefix) or (prefix == "heldout-L" and s == "heldout-classic") for s in suites]]


for pool, prefix in (("linear", "heldout-L"), ("nonlinear", "heldout-NL")):
    sub = in_pool(per_scm, prefix)
    table = sub.groupby("method").mean().round(3)
    print(f"\n## {pool} ({sub.index.get_level_values('scm_id').nunique()} SCMs)\n")
    print(table.to_string())
    if focus in table.index:
        mine = sub.xs(focus, level="method")
        for other in table.index.drop(focus):
            diff = (mine - sub.xs(other, level="method")).dropna()
            boots = np.array([diff.iloc[rng.integers(0, len(diff), len(diff))].mean() for _ in range(1000)])
            lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
            print(
                f"  {focus} - {other:20s} "
                + "  ".join(
                    f"{c} {diff[c].mean():+.3f} [{lo[i]:+.3f}, {hi[i]:+.3f}]" for i, c in enumerate(diff.columns)
                )
            )
    seeds = in_pool(per_seed, prefix).groupby(["method", "seed"])["per_step"].mean().unstack().round(3)
    print("\nper seed, per-step mean:\n" + seeds[seeds.columns[seeds.columns >= 0]].dropna().to_string())
