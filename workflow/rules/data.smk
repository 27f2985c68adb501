rule download:
    """Download (or simulate) a dataset and import it as raw counts."""
    input:
        local_source,
    output:
        "resources/{dataset}/counts.h5ad",
    params:
        entry=download_entry,
        content=source_content,
        cache_dir=lambda wildcards: f"resources/{wildcards.dataset}/download",
    log:
        "logs/{dataset}/download.log",
    benchmark:
        "results/{dataset}/benchmarks/download.tsv"
    conda:
        "../../envs/download.yaml"
    script:
        "../scripts/download.py"
