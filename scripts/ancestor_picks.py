"""Where a baseline's interventions go on the held-out suites: per suite, the share of its first K interventions
(default 10) on variables that are not ancestors of the target (no causal effect on it: wasted on any SCM), how
often the optimal variable is a parent of the target, how often it is among the first K, and the best-so-far after
K with and without it; then, for the episodes with and without it, how many of the first K (and of the first 3)
set a non-ancestor, and how many distinct non-ancestors they set. Reads the baseline tables of a built study
(results/baselines/SUITE.parquet: the oracle's rows give the optimal variables) and the suites' graphs. Usage:
python scripts/ancestor_picks.py SUITE[,SUITE...] [METHOD] [K]"""

import sys

import numpy as np
import pandas as pd

from workflow_src.core.graph import ancestors
from workflow_src.suites.suite_io import load_suite

suites = sys.argv[1].split(",")
method = sys.argv[2] if len(sys.argv) > 2 else "causal_bo"
k = int(sys.argv[3]) if len(sys.argv) > 3 else 10
rows, detail = [], []
for name in suites:
    table = pd.read_parquet(f"results/baselines/{name}.parquet")
    oracle = table[(table["method"] == "oracle") & (table["step"] == 0) & (table["episode"] == 0)]  # optimal variables
    table = table[(table["method"] == method) & (table["step"] < k)]
    non_ancestor, shares = {}, []
    for scm in load_suite(f"results/suites/{name}.json").scms:
        effect = ancestors(scm.adjacency, scm.target)
        non_ancestor[scm.id] = {node: not effect[i] for i, node in enumerate(scm.nodes)}
        shares.append(effect[np.asarray(scm.intervenable)].mean())
    table = table.assign(non_ancestor=[non_ancestor[s][v] for s, v in zip(table["scm_id"], table["variable"])])
    table = table.assign(first3=table["step"] < 3,
                         wasted_variable=table["variable"].where(table["non_ancestor"]))
    episodes = table.groupby(["scm_id", "episode"]).agg(
        non_ancestor=("non_ancestor", "mean"), optimal=("is_optimal_variable", "any"),
        best=("norm_improvement", "max"), non_ancestor_steps=("non_ancestor", "sum"),
        distinct_non_ancestors=("wasted_variable", "nunique"))
    episodes["non_ancestor_first3"] = (table[table["first3"]].groupby(["scm_id", "episode"])["non_ancestor"].sum()
                                       .reindex(episodes.index, fill_value=0))
    for tried, part in episodes.groupby("optimal"):
        detail.append({"suite": name, "optimal variable tried": tried, "episodes": len(part),
                       f"non-ancestor steps of first {k}": part["non_ancestor_steps"].mean(),
                       "of first 3": part["non_ancestor_first3"].mean(),
                       "distinct non-ancestors": part["distinct_non_ancestors"].mean()})
    rows.append({"suite": name, "ancestor share of intervenable": np.mean(shares),
                 "optimal variable is a parent": oracle["is_parent"].mean(),
                 f"non-ancestor share of first {k}": episodes["non_ancestor"].mean(),
                 "optimal variable tried": episodes["optimal"].mean(),
                 f"best@{k} tried": episodes.loc[episodes["optimal"], "best"].mean(),
                 f"best@{k} not tried": episodes.loc[~episodes["optimal"], "best"].mean(),
                 f"best@{k}": episodes["best"].mean()})
print(f"{method}, first {k} interventions per episode")
print(pd.DataFrame(rows).set_index("suite").round(3).to_string())
print(f"\nepisodes with and without the optimal variable among the first {k}")
print(pd.DataFrame(detail).set_index(["suite", "optimal variable tried"]).round(2).to_string())
