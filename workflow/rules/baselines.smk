rule baseline:
    """scanpy's standard pipeline on the QC'd counts, then Leiden (resolution 1 or searched to give
    the true K) or k-means on its 50 PCs: the methods leiden, leiden_k, kmeans_pca."""
    input:
        counts="results/{dataset}/preprocess/qc.h5ad",
        graph=baseline_graph,
    output:
        h5ad="results/{dataset}/{method}/seed{seed}/{method}.h5ad",
        clusters="results/{dataset}/{method}/seed{seed}/clusters.tsv",
    wildcard_constraints:
        method=xp.STANDARD_BASELINE_REGEX,
    params:
        method=lambda wildcards: wildcards.method,
        n_clusters=lambda wildcards: dataset_entry(wildcards)["n_clusters"],
        seed=lambda wildcards: int(wildcards.seed),
        baselines={k: v for k, v in config["baselines"].items() if k != "scvi"},
    threads: 2
    log:
        "logs/{dataset}/{method}/seed{seed}/baseline.log",
    benchmark:
        "results/{dataset}/benchmarks/{method}_seed{seed}.tsv"
    conda:
        "../../envs/baseline.yaml"
    script:
        "../scripts/baseline.py"


rule scvi:
    """scVI's latent space (scvi-tools' standard set-up) clustered by Leiden or k-means: the
    optional methods scvi_leiden, scvi_kmeans. Without scvi-tools the job still succeeds and its
    result says that the method is missing and why."""
    input:
        counts="results/{dataset}/preprocess/qc.h5ad",
        graph=baseline_graph,
    output:
        h5ad="results/{dataset}/{method}/seed{seed}/{method}.h5ad",
        clusters="results/{dataset}/{method}/seed{seed}/clusters.tsv",
    wildcard_constraints:
        method=xp.SCVI_BASELINE_REGEX,
    params:
        method=lambda wildcards: wildcards.method,
        n_clusters=lambda wildcards: dataset_entry(wildcards)["n_clusters"],
        seed=lambda wildcards: int(wildcards.seed),
        baselines=config["baselines"],
    threads: 4
    resources:
        gpu=1,
    log:
        "logs/{dataset}/{method}/seed{seed}/scvi.log",
    benchmark:
        "results/{dataset}/benchmarks/{method}_seed{seed}.tsv"
    conda:
        "../../envs/scvi.yaml"
    script:
        "../scripts/baseline.py"
