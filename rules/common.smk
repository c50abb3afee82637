# Config slices and paths shared by the stage rules; the layout itself lives in workflow_src/paths.py.

import shlex

from workflow_src.config import (
    canonical_json,
    digest,
    experiment,
    has_response_model,
    stage_slice,
)
from workflow_src.paths import (
    baseline_table,
    charts_dir,
    checkpoint_dir,
    checkpoint_file,
    compare_html,
    eval_table,
    is_train_suite,
    job_log,
    plugin_table,
    response_quality_table,
    suite_file,
    summary_html,
    summary_inputs,
    summary_table,
    train_log,
    train_suite_files,
)
from workflow_src.provenance import code_hash, plugin_source_hash
from workflow_src.stages import STAGES

ENV = "../envs/acbo.yaml"


wildcard_constraints:
    config=r"[A-Za-z0-9_-]+",
    seed=r"\d+",
    suite=r"[A-Za-z0-9_.-]+",
    method=r"[A-Za-z][A-Za-z0-9_]*",


def spec_arg(obj):
    """A config slice as a shell-quoted canonical JSON argument (also what makes params change)."""
    return shlex.quote(canonical_json(obj))


def stage_spec(stage):
    """The ``--spec`` param of a stage's rule: its config slice (``workflow_src/stages.py``), per the value of the
    stage's wildcard where it has one."""
    wildcard = STAGES[stage].wildcard
    if wildcard:
        return lambda wc: spec_arg(stage_slice(stage, CFG, getattr(wc, wildcard)))
    return spec_arg(stage_slice(stage, CFG))


def stage_code(stage):
    """The ``code`` param of a stage's rule: the hash of the code its command runs."""
    return code_hash(STAGES[stage].entries)


def per_attempt(mem_mb):
    """A rule's memory request, doubled on a retry (profiles/slurm retries a failed job once, so a job killed for
    lack of memory gets more; any other failure fails again at most once)."""
    return lambda wildcards, attempt: mem_mb * attempt


# Scheduling: training is the long chain of a study (train, then its evaluations), so its suites and its jobs
# are started before the independent baseline and evaluation jobs that can fill the other cores meanwhile.
TRAIN_PRIORITY = 1


def suite_priority(wildcards):
    return TRAIN_PRIORITY + 1 if is_train_suite(wildcards.suite) else 0


def train_suites_of(name):
    exp = experiment(CFG, name)
    return train_suite_files(exp["levels"], curriculum=exp["train_suites"])


def user_suite_source(suite):
    """The user's file behind a suite named under suites.user (an input, so editing it reruns the copy)."""
    return [CFG["suites"]["user"][suite]] if suite in CFG["suites"]["user"] else []


def trained_config_hash(name):
    """The hash final.ckpt must carry: that of the config's training slice."""
    return digest(stage_slice("train", CFG, name))


def summary_inputs_of(name):
    exp = experiment(CFG, name)
    return summary_inputs(
        name,
        exp["seeds"],
        exp["eval_suites"],
        plugins=plugin_names(),
        response_model=has_response_model(CFG, name),
    )


def plugin_names():
    return sorted(CFG["evaluation"]["plugins"])


def plugin_file(method):
    return stage_slice("plugin", CFG, method)["file"]


def plugin_hash(method):
    """The hash of the plug-in file and the helper modules it imports from its folder: a rule param, so an edit of
    either reruns its jobs (the Snakefile checked the file exists)."""
    return plugin_source_hash(plugin_file(method))


def plugin_tables_arg(name):
    """``--plugins FILE...`` for a config's summary, empty without plug-ins."""
    files = summary_inputs_of(name)["plugins"]
    return shlex.join(["--plugins", *files]) if files else ""


def response_quality_arg(name):
    """``--response-quality FILE...`` for a config's summary, empty for a config without a response model."""
    files = summary_inputs_of(name)["response_quality"]
    return shlex.join(["--response-quality", *files]) if files else ""


def response_model_config(wildcards):
    """Input function of the response quality rule: refuses a config without a response model (no such job)."""
    if not has_response_model(CFG, wildcards.config):
        raise ValueError(
            f"config {wildcards.config!r} has no response model (policy.response_model: false): "
            "no response quality table"
        )
    return []
