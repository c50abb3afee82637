# Path helpers and config slices shared by the stage rules.

import shlex

from workflow_src.config import (
    baselines_slice,
    canonical_json,
    digest,
    evaluation_slice,
    summary_slice,
    suite_slice,
    train_slice,
)
from workflow_src.provenance import code_hash

ENV = "../envs/acbo.yaml"


wildcard_constraints:
    config=r"[A-Za-z0-9_-]+",
    seed=r"\d+",
    suite=r"[A-Za-z0-9_.-]+",


def spec_arg(obj):
    """A config slice as a shell-quoted canonical JSON argument (also what makes params change)."""
    return shlex.quote(canonical_json(obj))


def suite_file(suite):
    return f"results/suites/{suite}.json"


def user_suite_source(suite):
    """The user's file behind a suite named under suites.user (an input, so editing it reruns the copy)."""
    return [CFG["suites"]["user"][suite]] if suite in CFG["suites"]["user"] else []


def train_suite_files(name):
    return [suite_file(f"train-L{level:02d}") for level in CFG["experiments"][name]["levels"]]


def checkpoint_file(name, seed, which="final"):
    return f"checkpoints/{name}/seed_{seed}/{which}.ckpt"


def train_log(name, seed):
    return f"results/{name}/train/seed_{seed}.parquet"


def trained_config_hash(name):
    """The hash final.ckpt must carry: that of the config's training slice."""
    return digest(train_slice(CFG, name))


def eval_table(name, seed, suite):
    return f"results/{name}/eval/seed_{seed}/{suite}.parquet"


def baseline_table(suite):
    return f"results/baselines/{suite}.parquet"


def summary_html(name):
    return f"results/{name}/summary.html"


def seeds_of(name):
    return CFG["experiments"][name]["seeds"]


def eval_suites_of(name):
    return CFG["experiments"][name]["eval_suites"]
