# SCM suites: generated per curriculum level (train-LNN, heldout-LNN), the fixed heldout-classic
# suite, or a user-written file named under suites.user (validated and copied, never regenerated).


rule suite:
    input:
        lambda wc: user_suite_source(wc.suite),
    output:
        suite_file("{suite}"),
    log:
        job_log("suites", "{suite}"),
    priority: suite_priority
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        # minutes; a user suite's oracles are bounded to fit (suites/oracle.py MAX_ORACLE_WORK: about 13 s, under
        # 4 CPU minutes even when every SCM needs the larger sample); generated suites take well under a minute
        runtime=10,
    params:
        spec=stage_spec("suite"),
        code=stage_code("suite"),
    shell:
        "acbo suite generate --spec {params.spec} --out {output:q} > {log:q} 2>&1"
