"""Where a baseline's interventions go on the held-out suites: per suite, the share of its first K interventions
(default 10) on variables that are not ancestors of the target (no causal effect on it: wasted on any SCM),
how often the optimal variable is among the first K, and the best-so-far after K with and without it. Reads
the baseline tables of a built study (results/baselines/SUITE.parquet) and the suites' graphs. Usage:
python scripts/ancestor_picks.py SUITE[,SUITE...] [METHOD] [K]"""

import sys

import numpy as np
import pandas as pd

from workflow_src.core.graph import ancestors
from workflow_src.suites.suite_io import load_suite

suites = sys.argv[1].split(",")
method = sys.argv[2] if len(sys.argv) > 2 else "causal_bo"
k = int(sys.argv[3]) if len(sys.argv) > 3 else 10
rows = []
for name in suites:
    table = pd.read_parquet(f"results/baselines/{name}.parquet")
    table = table[(table["method"] == method) & (table["step"] < k)]
    non_ancestor, shares = {}, []
    for scm in load_suite(f"results/suites/{name}.json").scms:
        effect = ancestors(scm.adjacency, scm.target)
        non_ancestor[scm.id] = {node: not effect[i] for i, node in enumerate(scm.nodes)}
        shares.append(effect[np.asarray(scm.intervenable)].mean())
    table = table.assign(non_ancestor=[non_ancestor[s][v] for s, v in zip(table["scm_id"], table["variable"])])
    episodes = table.groupby(["scm_id", "episode"]).agg(
        non_ancestor=("non_ancestor", "mean"), optimal=("is_optimal_variable", "any"),
        best=("norm_improvement", "max"))
    rows.append({"suite": name, "ancestor share of intervenable": np.mean(shares),
                 f"non-ancestor share of first {k}": episodes["non_ancestor"].mean(),
                 "optimal variable tried": episodes["optimal"].mean(),
                 f"best@{k} tried": episodes.loc[episodes["optimal"], "best"].mean(),
                 f"best@{k} not tried": episodes.loc[~episodes["optimal"], "best"].mean(),
                 f"best@{k}": episodes["best"].mean()})
print(f"{method}, first {k} interventions per episode")
print(pd.DataFrame(rows).set_index("suite").round(3).to_string())
