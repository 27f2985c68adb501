rule graph:
    """PCA and the symmetrised Euclidean kNN graph (docs/method.md §2)."""
    input:
        "results/{dataset}/preprocess/normalized_t{t}.h5ad",
    output:
        "results/{dataset}/preprocess/graph_t{t}_k{k}.h5ad",
    params:
        n_neighbors=lambda wildcards: int(wildcards.k),
        n_pcs=config["graph"]["n_pcs"],
        method=config["graph"]["method"],
    threads: 2
    log:
        "logs/{dataset}/graph_t{t}_k{k}.log",
    benchmark:
        "results/{dataset}/benchmarks/graph_t{t}_k{k}.tsv"
    conda:
        "../../envs/graph.yaml"
    script:
        "../scripts/graph.py"
