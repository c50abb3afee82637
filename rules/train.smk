# GRPO training per experiment config and seed. Periodic episode_NNNNN.ckpt, latest.ckpt (resume)
# and best.ckpt are written beside final.ckpt; a restarted job resumes from latest.ckpt.


rule train:
    input:
        lambda wc: train_suites_of(wc.config),
    output:
        final=checkpoint_file("{config}", "{seed}", "final"),
        best=checkpoint_file("{config}", "{seed}", "best"),
        log_table=train_log("{config}", "{seed}"),
    log:
        job_log("{config}", "train", "seed_{seed}"),
    priority: TRAIN_PRIORITY
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=lambda wc: 10 + experiment(CFG, wc.config)["episodes"] // 20,
    params:
        spec=stage_spec("train"),
        verbose=lambda wc: "--verbose" if experiment(CFG, wc.config)["verbose"] else "",
        checkpoint_dir=checkpoint_dir("{config}", "{seed}"),
        code=stage_code("train"),
    shell:
        "acbo train --experiment {wildcards.config:q} --seed {wildcards.seed:q} --spec {params.spec}"
        " --threads {threads} --suites {input:q} --checkpoint-dir {params.checkpoint_dir:q}"
        " --log-table {output.log_table:q} {params.verbose} > {log:q} 2>&1"
