rule qc:
    """Cell and gene filters (docs/method.md §1.1)."""
    input:
        "resources/{dataset}/counts.h5ad",
    output:
        h5ad=QC_FILE,
        settings="results/{dataset}/preprocess/qc_{hash}.yaml",
    params:
        settings=checked_preprocess_settings("qc"),
    log:
        "logs/{dataset}/qc_{hash}.log",
    benchmark:
        "results/{dataset}/benchmarks/qc_{hash}.tsv"
    conda:
        "../../envs/qc.yaml"
    script:
        "../scripts/qc.py"


rule normalize:
    """Size factors, log1p, top-t highly variable genes, scaled network input (docs/method.md §1.2–5)."""
    input:
        qc_file(),
    output:
        h5ad=NORMALIZED_FILE,
        settings="results/{dataset}/preprocess/normalized_t{t}_{hash}.yaml",
    params:
        settings=checked_preprocess_settings("normalize"),
    log:
        "logs/{dataset}/normalize_t{t}_{hash}.log",
    benchmark:
        "results/{dataset}/benchmarks/normalize_t{t}_{hash}.tsv"
    conda:
        "../../envs/normalize.yaml"
    script:
        "../scripts/normalize.py"
