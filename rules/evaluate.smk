# Evaluation: the trained policy per (config, seed, suite), the baselines per suite, and each plug-in
# method per suite. Baselines and plug-ins depend only on the global evaluation protocol (and a plug-in on
# its file), so every config and seed shares them.
# Memory: a suite runs in fixed chunks of SCMs (shape buckets), so a job's peak does not grow with the number
# of SCMs beyond ~70 bytes per table row; measured peaks: 0.43-0.67 GB for a 32-SCM suite, 1.51 GB (baselines,
# cold cache; 0.71 GB before methods were traced apart and suites verified on entry) and 0.98 GB (policy, cold
# compilation) for 5000 three-node SCMs. mem_mb leaves room above that.


rule evaluate:
    input:
        checkpoint=checkpoint_file("{config}", "{seed}", "final"),
        suite=suite_file("{suite}"),
    output:
        eval_table("{config}", "{seed}", "{suite}"),
    log:
        job_log("{config}", "eval", "seed_{seed}", "{suite}"),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=per_attempt(1500),
        runtime=15,
    params:
        spec=stage_spec("evaluate"),
        trained=lambda wc: trained_config_hash(wc.config),
        code=stage_code("evaluate"),
    shell:
        "acbo evaluate --checkpoint {input.checkpoint:q} --suite {input.suite:q} --out {output:q}"
        " --experiment {wildcards.config:q} --seed {wildcards.seed:q} --spec {params.spec} --threads {threads}"
        " --train-config-hash {params.trained}"
        " > {log:q} 2>&1"


# The response model of a checkpoint measured as a model on one suite (configs with policy.response_model only:
# the summary of any other config does not ask for it).
rule response_quality:
    input:
        response_model_config,
        checkpoint=checkpoint_file("{config}", "{seed}", "final"),
        suite=suite_file("{suite}"),
    output:
        response_quality_table("{config}", "{seed}", "{suite}"),
    log:
        job_log("{config}", "response_quality", "seed_{seed}", "{suite}"),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=per_attempt(1500),
        runtime=15,
    params:
        spec=stage_spec("response_quality"),
        trained=lambda wc: trained_config_hash(wc.config),
        code=stage_code("response_quality"),
    shell:
        "acbo response-quality --checkpoint {input.checkpoint:q} --suite {input.suite:q} --out {output:q}"
        " --experiment {wildcards.config:q} --seed {wildcards.seed:q} --spec {params.spec} --threads {threads}"
        " --train-config-hash {params.trained}"
        " > {log:q} 2>&1"


rule baselines:
    input:
        suite=suite_file("{suite}"),
    output:
        baseline_table("{suite}"),
    log:
        job_log("baselines", "{suite}"),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=15,
    params:
        spec=stage_spec("baselines"),
        code=stage_code("baselines"),
    shell:
        "acbo baselines --suite {input.suite:q} --out {output:q} --spec {params.spec} --threads {threads}"
        " > {log:q} 2>&1"


rule plugin:
    input:
        suite=suite_file("{suite}"),
        plugin=lambda wc: plugin_file(wc.method),
    output:
        plugin_table("{method}", "{suite}"),
    log:
        job_log("plugins", "{method}", "{suite}"),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=15,
    params:
        spec=stage_spec("plugin"),
        plugin=lambda wc: plugin_hash(wc.method),
        code=stage_code("plugin"),
    shell:
        "acbo plugin --file {input.plugin:q} --name {wildcards.method:q} --suite {input.suite:q} --out {output:q}"
        " --spec {params.spec} --threads {threads} > {log:q} 2>&1"
