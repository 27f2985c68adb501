rule train:
    """Train scDSEC on one dataset with one seed (docs/method.md §3–6); GPU when present. `method` is the
    model (`scdsec`) or one of its variants — `sdcn`, `scdsec-<ablation>`, `scdsec-t<t>`,
    `scdsec-k<K>`, `scdsec-alpha<a>` (scdsec/experiments.py) — each with its own graph and params."""
    input:
        train_graph,
    output:
        h5ad="results/{dataset}/{method}/seed{seed}/scdsec.h5ad",
        clusters="results/{dataset}/{method}/seed{seed}/clusters.tsv",
        loss="results/{dataset}/{method}/seed{seed}/loss.tsv",
        model=directory("results/{dataset}/{method}/seed{seed}/model"),
    wildcard_constraints:
        method=xp.DEEP_METHOD_REGEX,
    params:
        n_clusters=lambda wildcards: dataset_entry(wildcards)["n_clusters"],
        model=train_params,
        seed=lambda wildcards: int(wildcards.seed),
        deterministic=config["deterministic"],
        # outside the outputs, which Snakemake deletes before it reruns a job
        checkpoint_dir="results/checkpoints/{dataset}.{method}.seed{seed}",
    threads: 4
    resources:
        gpu=1,
    log:
        "logs/{dataset}/{method}/seed{seed}/train.log",
    benchmark:
        "results/{dataset}/benchmarks/{method}_seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
