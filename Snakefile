# ACBO benchmark workflow: SCM suites -> GRPO training -> evaluation -> summary.
# All logic lives in the `workflow_src` package; every rule is a thin call to its `acbo` CLI.

from snakemake.utils import min_version

from workflow_src.config import ConfigError, check_plugin_files, check_user_suite_files, resolve_config

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


try:
    CFG = resolve_config(config, source="config")
    check_user_suite_files(CFG)
    check_plugin_files(CFG)
except ConfigError as err:
    raise ValueError(f"invalid configuration:\n{err}") from None


include: "rules/common.smk"
include: "rules/suites.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        [summary_html(name) for name in CFG["experiments"]],
        compare_html(),
