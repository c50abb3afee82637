# Summary per experiment config (Parquet + self-contained HTML + PNG charts) and the cross-config
# comparison. They read Parquet tables (and the summary its suite files: which SCMs are linear), so rerunning
# them reproduces the pages byte for byte.


rule summary:
    input:
        unpack(lambda wc: summary_inputs_of(wc.config)),
    output:
        table=summary_table("{config}"),
        html=report(
            summary_html("{config}"),
            caption="../report/summary.rst",
            category="Summary",
            labels={"config": "{config}", "figure": "summary page"},
        ),
        charts=report(
            directory(charts_dir("{config}")),
            patterns=["{name}.png"],
            caption="../report/chart.rst",
            category="Charts",
            labels={"config": "{config}", "figure": "{name}"},
        ),
    log:
        job_log("{config}", "summary"),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=lambda wc: spec_arg(summary_slice(CFG, wc.config)),
        plugins=lambda wc: plugin_tables_arg(wc.config),
        code=code_hash("summary"),
    shell:
        "acbo summarize --experiment {wildcards.config} --spec {params.spec} --evals {input.evals}"
        " --baselines {input.baselines} {params.plugins} --train-logs {input.train_logs} --final-checkpoints {input.checkpoints}"
        " --suites {input.suites}"
        " --out-table {output.table} --out-html {output.html} --charts-dir {output.charts} > {log} 2>&1"


rule compare:
    input:
        [summary_table(name) for name in CFG["experiments"]],
    output:
        report(
            compare_html(),
            caption="../report/compare.rst",
            category="Summary",
            labels={"figure": "config comparison"},
        ),
    log:
        job_log("compare"),
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
