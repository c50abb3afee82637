"""A built-in baseline run on suites outside the workflow, for trying a change to it before a study is rebuilt:
per suite its best-so-far normalized improvement after 5 / 10 / 20 interventions (mean over SCMs and episodes),
under the study's protocol (config/config.yaml's evaluation: observational samples, interventions, seed) with
EPISODES episodes per SCM. Reads the suites a study built (results/suites/SUITE.json). Usage:
python scripts/baseline_probe.py SUITE[,SUITE...] [METHOD] [EPISODES]
It imports the package from PYTHONPATH first, so an older commit's method runs on today's suites from a git
worktree: git worktree add /tmp/old COMMIT && PYTHONPATH=/tmp/old python scripts/baseline_probe.py ..."""

import sys
import time

import numpy as np
import yaml

from workflow_src.evaluate.baselines import baseline_method
from workflow_src.evaluate.methods import Method
from workflow_src.evaluate.run import run_methods
from workflow_src.suites.suite_io import load_suite

suites = sys.argv[1].split(",")
name = sys.argv[2] if len(sys.argv) > 2 else "causal_bo"
episodes = int(sys.argv[3]) if len(sys.argv) > 3 else 10
method = Method(name, baseline_method(name).act, program_id=None, reads_truth=False)
with open("config/config.yaml") as file:  # read as YAML, not validated: an older commit's schema may differ
    evaluation = yaml.safe_load(file)["evaluation"]
protocol = {**{k: evaluation[k] for k in ("n_obs", "interventions", "seed")}, "episodes": episodes}
pooled = []
for suite in suites:
    start = time.perf_counter()
    record = run_methods([method], None, load_suite(f"results/suites/{suite}.json"), protocol)[0]
    best = np.maximum.accumulate(record["norm_improvement"], -1)[..., [4, 9, 19]]  # (SCMs, episodes, 3)
    pooled.append(best.reshape(-1, 3))
    print(f"{suite}: best after 5 / 10 / 20 " + " / ".join(f"{b:.3f}" for b in best.mean((0, 1)))
          + f" ({time.perf_counter() - start:.0f} s)", flush=True)
print(f"{name}, {episodes} episodes per SCM, pooled: " + " / ".join(f"{b:.3f}" for b in np.concatenate(pooled).mean(0)))
