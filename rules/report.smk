# Summary per experiment config (Parquet + self-contained HTML + PNG charts) and the cross-config
# comparison. Both read only Parquet tables, so rerunning them reproduces the pages byte for byte.


rule summary:
    input:
        evals=lambda wc: [
            eval_table(wc.config, seed, suite) for seed in seeds_of(wc.config) for suite in eval_suites_of(wc.config)
        ],
        baselines=lambda wc: [baseline_table(suite) for suite in eval_suites_of(wc.config)],
        train_logs=lambda wc: [train_log(wc.config, seed) for seed in seeds_of(wc.config)],
        checkpoints=lambda wc: [checkpoint_file(wc.config, seed) for seed in seeds_of(wc.config)],
    output:
        table="results/{config}/summary.parquet",
        html=report(
            "results/{config}/summary.html",
            category="Summary",
            labels={"config": "{config}", "figure": "summary page"},
        ),
        charts=report(
            directory("results/{config}/charts"),
            patterns=["{name}.png"],
            category="Charts",
            labels={"config": "{config}", "figure": "{name}"},
        ),
    log:
        "logs/{config}/summary.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=lambda wc: spec_arg(summary_slice(CFG, wc.config)),
        code=code_hash("summary"),
    shell:
        "acbo summarize --experiment {wildcards.config} --spec {params.spec} --results results"
        " --out-table {output.table} --out-html {output.html} --charts-dir {output.charts} > {log} 2>&1"


rule compare:
    input:
        [f"results/{name}/summary.parquet" for name in CFG["experiments"]],
    output:
        report("results/compare.html", category="Summary", labels={"figure": "config comparison"}),
    log:
        "logs/compare.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code_hash("summary"),
    shell:
        "acbo compare {input} --out {output} > {log} 2>&1"


localrules:
    summary,
    compare,
