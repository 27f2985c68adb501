rule train:
    """Train scDSEC on one dataset with one seed (docs/method.md §3–6); GPU when present. `method` is the
    model (`scdsec`) or one of its variants — `sdcn`, `scdsec-<ablation>`, `scdsec-t<t>`,
    `scdsec-k<K>`, `scdsec-alpha<a>` (scdsec/experiments.py) — each with its own graph and params."""
    input:
        train_graph,
    output:
        h5ad=f"{RUN_DIR}/scdsec.h5ad",
        clusters=f"{RUN_DIR}/clusters.tsv",
        loss=f"{RUN_DIR}/loss.tsv",
        model=directory(f"{RUN_DIR}/model"),
        params=f"{RUN_DIR}/params.yaml",
    wildcard_constraints:
        method=xp.DEEP_METHOD_REGEX,
    params:
        n_clusters=lambda wildcards: dataset_entry(wildcards)["n_clusters"],
        model=train_params,
        seed=lambda wildcards: int(wildcards.seed),
        batch_key=lambda wildcards: batch_key(wildcards.dataset),
        deterministic=config["deterministic"],
        run_config=checked_run_config,
        # outside the outputs, which Snakemake deletes before it reruns a job
        checkpoint_dir="results/checkpoints/{dataset}.{method}.{params}.seed{seed}",
    threads: 4
    resources:
        gpu=1,
    log:
        f"{RUN_LOG_DIR}/train.log",
    benchmark:
        "results/{dataset}/benchmarks/{method}_{params}_seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
