# The paper's experiments as targets (METHOD.md §7): `snakemake benchmark`, `snakemake ablation`,
# `snakemake sensitivity`. Each writes a TSV under results/; figures come from plot.smk.


rule benchmark:
    """Table 2: every method of `methods` × dataset of `run` × seed of `seeds` → scores.tsv (one
    row each, missing methods included) and table.md (NMI and ARI, mean ± sd over seeds)."""
    input:
        expand("results/{dataset}/metrics.tsv", dataset=config["run"]),
    output:
        scores="results/benchmark/scores.tsv",
        table="results/benchmark/table.md",
    params:
        methods=config["methods"],
        datasets=config["run"],
    log:
        "logs/benchmark/benchmark.log",
    conda:
        "../../envs/benchmark.yaml"
    script:
        "../scripts/benchmark.py"


rule ablation:
    """Fig. 2 / Table 3: the full model and each variant of `experiments.ablation` on
    `experiments.datasets` × `experiments.seeds` → scores.tsv (dataset variant seed nmi ari acc)."""
    input:
        graphs=lambda wildcards: list(experiment_graphs().values()),
        results=lambda wildcards: entry_files(ablation_entries()),
    output:
        "results/ablation/scores.tsv",
    params:
        entries=ablation_entries,
        graphs=experiment_graphs,
    log:
        "logs/ablation/ablation.log",
    conda:
        "../../envs/ablation.yaml"
    script:
        "../scripts/experiment.py"


checkpoint count_genes:
    """The number of genes left after QC: the t sweep is capped at it."""
    input:
        "results/{dataset}/preprocess/qc.h5ad",
    output:
        "results/{dataset}/preprocess/n_genes.txt",
    log:
        "logs/{dataset}/count_genes.log",
    conda:
        "../../envs/count_genes.yaml"
    script:
        "../scripts/count_genes.py"


rule sensitivity:
    """Figs. 3–5: t, K and α swept over `experiments.sensitivity` (t capped at the genes
    available) → scores.tsv (dataset parameter value seed nmi ari acc)."""
    input:
        graphs=lambda wildcards: list(experiment_graphs().values()),
        results=lambda wildcards: entry_files(sensitivity_entries()),
    output:
        "results/sensitivity/scores.tsv",
    params:
        entries=sensitivity_entries,
        graphs=experiment_graphs,
    log:
        "logs/sensitivity/sensitivity.log",
    conda:
        "../../envs/sensitivity.yaml"
    script:
        "../scripts/experiment.py"
