# Figures of each run (a deep method × dataset × seed) and of the experiments (the paper's Table 2 and Figs. 2–5).
# Every figure goes into `snakemake --report report.html` with its caption (workflow/report/).


rule plot_loss:
    """Per-term training loss curves of one run."""
    input:
        f"{RUN_DIR}/loss.tsv",
    output:
        report(
            f"{RUN_DIR}/plots/loss.png",
            caption="../report/loss.rst",
            category="Training",
            subcategory="{dataset}",
            labels={**RUN_LABELS, "figure": "loss curves"},
        ),
    wildcard_constraints:
        method=xp.DEEP_METHOD_REGEX,
    params:
        context=run_context,
    log:
        f"{RUN_LOG_DIR}/plot_loss.log",
    conda:
        "../../envs/plot_loss.yaml"
    script:
        "../scripts/plot_loss.py"


rule plot_embeddings:
    """UMAP of the expression vs of the scDSEC embedding, by true type and by cluster (Fig. 6)."""
    input:
        f"{RUN_DIR}/scdsec.h5ad",
    output:
        report(
            f"{RUN_DIR}/plots/embeddings.png",
            caption="../report/embeddings.rst",
            category="Clusters",
            subcategory="{dataset}",
            labels={**RUN_LABELS, "figure": "UMAP"},
        ),
    wildcard_constraints:
        method=xp.DEEP_METHOD_REGEX,
    params:
        key="scdsec",
        seed=lambda wildcards: int(wildcards.seed),
        max_cells=config["plots"]["max_cells"],
        context=run_context,
    log:
        f"{RUN_LOG_DIR}/plot_embeddings.log",
    benchmark:
        "results/{dataset}/benchmarks/plot_embeddings/{method}_{params}_seed{seed}.tsv"
    conda:
        "../../envs/plot_embeddings.yaml"
    script:
        "../scripts/plot_embeddings.py"


rule plot_confusion:
    """True type vs cluster after Hungarian matching (datasets with true labels only)."""
    input:
        f"{RUN_DIR}/scdsec.h5ad",
    output:
        report(
            f"{RUN_DIR}/plots/confusion.png",
            caption="../report/confusion.rst",
            category="Clusters",
            subcategory="{dataset}",
            labels={**RUN_LABELS, "figure": "confusion matrix"},
        ),
    wildcard_constraints:
        method=xp.DEEP_METHOD_REGEX,
    params:
        key="scdsec",
        context=run_context,
    log:
        f"{RUN_LOG_DIR}/plot_confusion.log",
    conda:
        "../../envs/plot_confusion.yaml"
    script:
        "../scripts/plot_confusion.py"


rule plot_benchmark:
    """Table 2 as a figure: NMI and ARI per dataset and method, mean ± sd over seeds."""
    input:
        "results/benchmark/scores.tsv",
    output:
        report(
            "results/benchmark/benchmark.png",
            caption="../report/benchmark.rst",
            category="Experiments",
            labels={"figure": "benchmark"},
        ),
    params:
        kind="benchmark",
    log:
        "logs/benchmark/plot_benchmark.log",
    conda:
        "../../envs/plot_benchmark.yaml"
    script:
        "../scripts/plot_experiment.py"


rule plot_ablation:
    """Fig. 2 / Table 3: NMI, ARI and ACC of the full model and each ablation."""
    input:
        "results/ablation/scores.tsv",
    output:
        report(
            "results/ablation/ablation.png",
            caption="../report/ablation.rst",
            category="Experiments",
            labels={"figure": "ablation"},
        ),
    params:
        kind="ablation",
    log:
        "logs/ablation/plot_ablation.log",
    conda:
        "../../envs/plot_ablation.yaml"
    script:
        "../scripts/plot_experiment.py"


rule plot_sensitivity:
    """Figs. 3–5: NMI and ARI against t, K and α, mean ± sd over seeds."""
    input:
        "results/sensitivity/scores.tsv",
    output:
        report(
            "results/sensitivity/sensitivity.png",
            caption="../report/sensitivity.rst",
            category="Experiments",
            labels={"figure": "sensitivity"},
        ),
    params:
        kind="sensitivity",
        # The values a normal run uses, marked on each panel (α: as set, else the default).
        defaults={
            "t": T,
            "k": K,
            "alpha": MODEL_PARAMS["model"].get("alpha", config["model"].get("alpha")),
        },
    log:
        "logs/sensitivity/plot_sensitivity.log",
    conda:
        "../../envs/plot_sensitivity.yaml"
    script:
        "../scripts/plot_experiment.py"


rule plot_scalability:
    """The paper's Fig. 7: time and peak memory of each method's whole run against the cells."""
    input:
        "results/scalability/scores.tsv",
    output:
        report(
            "results/scalability/scalability.png",
            caption="../report/scalability.rst",
            category="Experiments",
            labels={"figure": "scalability"},
        ),
    params:
        kind="scalability",
    log:
        "logs/scalability/plot_scalability.log",
    conda:
        "../../envs/plot_scalability.yaml"
    script:
        "../scripts/plot_experiment.py"


rule plot_batches:
    """The paper's Fig. 8: the scDSEC embedding by cluster and by batch, and each cluster's batch
    composition (datasets with a batch_key only)."""
    input:
        f"{RUN_DIR}/scdsec.h5ad",
    output:
        report(
            f"{RUN_DIR}/plots/batches.png",
            caption="../report/batches.rst",
            category="Clusters",
            subcategory="{dataset}",
            labels={**RUN_LABELS, "figure": "batches"},
        ),
    wildcard_constraints:
        method=xp.DEEP_METHOD_REGEX,
    params:
        batch_key=lambda wildcards: batch_key(wildcards.dataset),
        key="scdsec",
        seed=lambda wildcards: int(wildcards.seed),
        max_cells=config["plots"]["max_cells"],
        context=run_context,
    log:
        f"{RUN_LOG_DIR}/plot_batches.log",
    conda:
        "../../envs/plot_batches.yaml"
    script:
        "../scripts/plot_batches.py"
