# The paper's experiments as targets (the paper's Table 2 and Figs. 2–5): `snakemake benchmark`, `snakemake ablation`,
# `snakemake sensitivity`. Each gathers a TSV (rules *_scores below) and its figure (plot.smk).


rule benchmark:
    """Table 2 and its figure: results/benchmark/{scores.tsv,table.md,benchmark.png}."""
    input:
        "results/benchmark/scores.tsv",
        "results/benchmark/table.md",
        "results/benchmark/benchmark.png",


rule ablation:
    """Fig. 2 / Table 3 and its figure: results/ablation/{scores.tsv,ablation.png}."""
    input:
        "results/ablation/scores.tsv",
        "results/ablation/ablation.png",


rule sensitivity:
    """Figs. 3–5 and their figure: results/sensitivity/{scores.tsv,sensitivity.png}."""
    input:
        "results/sensitivity/scores.tsv",
        "results/sensitivity/sensitivity.png",


rule benchmark_scores:
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
        "../../envs/benchmark_scores.yaml"
    script:
        "../scripts/benchmark.py"


rule ablation_scores:
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
        id_columns=["dataset", "variant", "seed"],
    log:
        "logs/ablation/ablation.log",
    conda:
        "../../envs/ablation_scores.yaml"
    script:
        "../scripts/experiment.py"


checkpoint count_genes:
    """The number of genes left after QC: the t sweep is capped at it."""
    input:
        QC_FILE,
    output:
        "results/{dataset}/preprocess/n_genes_{hash}.txt",
    log:
        "logs/{dataset}/count_genes_{hash}.log",
    conda:
        "../../envs/count_genes.yaml"
    script:
        "../scripts/count_genes.py"


rule sensitivity_scores:
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
        id_columns=["dataset", "parameter", "value", "seed"],
    log:
        "logs/sensitivity/sensitivity.log",
    conda:
        "../../envs/sensitivity_scores.yaml"
    script:
        "../scripts/experiment.py"


rule scalability:
    """Time and memory against the cells (the paper's Fig. 7): results/scalability/{scores.tsv,
    throughput.tsv,scalability.png}, from the steps of `methods` on each dataset of `run`."""
    input:
        "results/scalability/scores.tsv",
        "results/scalability/throughput.tsv",
        "results/scalability/scalability.png",


rule machine:
    """The machine's float32 matrix-product rate on the training device, measured in this run."""
    output:
        "results/scalability/machine.tsv",
    threads: 4
    resources:
        gpu=1,
    log:
        "logs/scalability/machine.log",
    conda:
        "../../envs/machine.yaml"
    script:
        "../scripts/machine.py"


rule scalability_scores:
    """Every step's wall time and peak memory (its Snakemake benchmark) per dataset and method,
    and scDSEC's training throughput as a fraction of the machine's matrix-product rate."""
    input:
        unpack(scalability_inputs),
    output:
        scores="results/scalability/scores.tsv",
        throughput="results/scalability/throughput.tsv",
    params:
        entries=scalability_entries(),
    log:
        "logs/scalability/scores.log",
    conda:
        "../../envs/scalability_scores.yaml"
    script:
        "../scripts/scalability.py"
