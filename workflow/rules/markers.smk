# Marker genes of each run's clusters (Wilcoxon rank-sum test of each cluster vs the rest).


rule markers:
    """Top marker genes of every cluster of one run → markers.tsv."""
    input:
        f"{RUN_DIR}/scdsec.h5ad",
    output:
        tsv=f"{RUN_DIR}/markers.tsv",
        # the same table as a page: the report shows HTML in place, a TSV only as a download
        html=report(
            f"{RUN_DIR}/markers.html",
            caption="../report/markers.rst",
            category="Marker genes",
            subcategory="{dataset}",
            labels={**RUN_LABELS, "figure": "marker table"},
        ),
    wildcard_constraints:
        method=xp.DEEP_METHOD_REGEX,
    params:
        key="scdsec",
        n_genes=config["markers"]["n_genes"],
        title=lambda wildcards: f"Marker genes of each cluster · {run_context(wildcards)}",
    log:
        f"{RUN_LOG_DIR}/markers.log",
    benchmark:
        "results/{dataset}/benchmarks/markers/{method}_{params}_seed{seed}.tsv"
    conda:
        "../../envs/markers.yaml"
    script:
        "../scripts/markers.py"


rule plot_markers:
    """Dot plot of the top marker genes of every cluster of one run."""
    input:
        h5ad=f"{RUN_DIR}/scdsec.h5ad",
        markers=f"{RUN_DIR}/markers.tsv",
    output:
        report(
            f"{RUN_DIR}/plots/markers_dotplot.png",
            caption="../report/markers_dotplot.rst",
            category="Marker genes",
            subcategory="{dataset}",
            labels={**RUN_LABELS, "figure": "marker dot plot"},
        ),
    wildcard_constraints:
        method=xp.DEEP_METHOD_REGEX,
    params:
        key="scdsec",
        n_genes=config["markers"]["dotplot_genes"],
        context=run_context,
    log:
        f"{RUN_LOG_DIR}/plot_markers.log",
    conda:
        "../../envs/plot_markers.yaml"
    script:
        "../scripts/plot_markers.py"
