rule baseline:
    """scanpy's standard pipeline on the QC'd counts, then Leiden (resolution 1 or searched to give
    the true K) or k-means on its 50 PCs: the methods leiden, leiden_k, kmeans_pca."""
    input:
        counts=qc_file(),
        graph=baseline_graph,
    output:
        h5ad=f"{RUN_DIR}/{{method}}.h5ad",
        clusters=f"{RUN_DIR}/clusters.tsv",
        params=f"{RUN_DIR}/params.yaml",
    wildcard_constraints:
        method=xp.STANDARD_BASELINE_REGEX,
    params:
        method=lambda wildcards: wildcards.method,
        n_clusters=lambda wildcards: dataset_entry(wildcards)["n_clusters"],
        seed=lambda wildcards: int(wildcards.seed),
        baselines=lambda wildcards: baseline_settings(wildcards.method),
        batch=lambda wildcards: baseline_batch(wildcards.dataset),
        run_config=checked_run_config,
    threads: 2
    log:
        f"{RUN_LOG_DIR}/baseline.log",
    benchmark:
        "results/{dataset}/benchmarks/{method}_{params}_seed{seed}.tsv"
    conda:
        "../../envs/baseline.yaml"
    script:
        "../scripts/baseline.py"


rule scvi:
    """scVI's latent space (scvi-tools' standard set-up) clustered by Leiden or k-means: the
    optional methods scvi_leiden, scvi_kmeans. Without scvi-tools the job still succeeds and its
    result says that the method is missing and why."""
    input:
        counts=qc_file(),
        graph=baseline_graph,
    output:
        h5ad=f"{RUN_DIR}/{{method}}.h5ad",
        clusters=f"{RUN_DIR}/clusters.tsv",
        params=f"{RUN_DIR}/params.yaml",
    wildcard_constraints:
        method=xp.SCVI_BASELINE_REGEX,
    params:
        method=lambda wildcards: wildcards.method,
        n_clusters=lambda wildcards: dataset_entry(wildcards)["n_clusters"],
        seed=lambda wildcards: int(wildcards.seed),
        baselines=lambda wildcards: baseline_settings(wildcards.method),
        batch=lambda wildcards: baseline_batch(wildcards.dataset),
        run_config=checked_run_config,
    threads: 4
    resources:
        gpu=1,
    log:
        f"{RUN_LOG_DIR}/scvi.log",
    benchmark:
        "results/{dataset}/benchmarks/{method}_{params}_seed{seed}.tsv"
    conda:
        "../../envs/scvi.yaml"
    script:
        "../scripts/baseline.py"
