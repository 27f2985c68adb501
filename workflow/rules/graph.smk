rule graph:
    """PCA and the symmetrised Euclidean kNN graph (docs/method.md §2)."""
    input:
        lambda wildcards: normalized_file(wildcards.t, wildcards.dataset),
    output:
        h5ad=GRAPH_FILE,
        settings="results/{dataset}/preprocess/graph_t{t}_k{k}_{hash}.yaml",
    params:
        settings=checked_preprocess_settings("graph"),
    threads: 2
    log:
        "logs/{dataset}/graph_t{t}_k{k}_{hash}.log",
    benchmark:
        "results/{dataset}/benchmarks/graph_t{t}_k{k}_{hash}.tsv"
    conda:
        "../../envs/graph.yaml"
    script:
        "../scripts/graph.py"
