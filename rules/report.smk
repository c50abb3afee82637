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
        # measured peaks: 0.63 GB for 17.5 MB of input tables, 1.22 GB for 65 MB (about 12.5 MB per MB read)
        mem_mb=lambda wc, input, attempt: max(2000, 1000 + 16 * int(input.size_mb)) * attempt,
        runtime=10,
    params:
        spec=stage_spec("summary"),
        plugins=lambda wc: plugin_tables_arg(wc.config),
        response=lambda wc: response_quality_arg(wc.config),
        code=stage_code("summary"),
    shell:
        "acbo summarize --experiment {wildcards.config:q} --spec {params.spec} --evals {input.evals:q}"
        " --baselines {input.baselines:q} {params.plugins} --train-logs {input.train_logs:q} --final-checkpoints {input.checkpoints:q}"
        " --suites {input.suites:q} {params.response}"
        " --out-table {output.table:q} --out-html {output.html:q} --charts-dir {output.charts:q} > {log:q} 2>&1"


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
        code=stage_code("summary"),
    shell:
        "acbo compare {input:q} --out {output:q} > {log:q} 2>&1"


localrules:
    compare,
