rule qc:
    """Cell and gene filters (docs/method.md §1.1)."""
    input:
        "resources/{dataset}/counts.h5ad",
    output:
        "results/{dataset}/preprocess/qc.h5ad",
    params:
        qc=config["qc"],
    log:
        "logs/{dataset}/qc.log",
    benchmark:
        "results/{dataset}/benchmarks/qc.tsv"
    conda:
        "../../envs/qc.yaml"
    script:
        "../scripts/qc.py"


rule normalize:
    """Size factors, log1p, top-t highly variable genes, scaled network input (docs/method.md §1.2–5)."""
    input:
        "results/{dataset}/preprocess/qc.h5ad",
    output:
        "results/{dataset}/preprocess/normalized_t{t}.h5ad",
    params:
        n_top_genes=lambda wildcards: int(wildcards.t),
        flavor=config["normalize"]["flavor"],
        clip=config["normalize"]["clip"],
    log:
        "logs/{dataset}/normalize_t{t}.log",
    benchmark:
        "results/{dataset}/benchmarks/normalize_t{t}.tsv"
    conda:
        "../../envs/normalize.yaml"
    script:
        "../scripts/normalize.py"
