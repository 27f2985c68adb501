rule train:
    """Train scDSEC on one dataset with one seed (METHOD.md §3–6); GPU when present."""
    input:
        graph_file(T, K),
    output:
        h5ad="results/{dataset}/scdsec/seed{seed}/scdsec.h5ad",
        clusters="results/{dataset}/scdsec/seed{seed}/clusters.tsv",
        loss="results/{dataset}/scdsec/seed{seed}/loss.tsv",
        model=directory("results/{dataset}/scdsec/seed{seed}/model"),
    params:
        n_clusters=lambda wildcards: dataset_entry(wildcards)["n_clusters"],
        model=MODEL_PARAMS,
        seed=lambda wildcards: int(wildcards.seed),
        deterministic=config["deterministic"],
    threads: 4
    resources:
        gpu=1,
    log:
        "logs/{dataset}/scdsec/seed{seed}/train.log",
    benchmark:
        "results/{dataset}/benchmarks/scdsec_seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
