rule evaluate:
    """Score every method × seed of one dataset: NMI, ARI, ACC, AMI (labelled cells only; the
    cells left out in n_unlabelled), clusters found, silhouettes (common PCA space, own
    embedding), k-means in the embedding vs the PCA space, time and memory (one row each in
    metrics.tsv)."""
    input:
        graph=lambda wildcards: graph_file(T, K, wildcards.dataset),
        results=evaluate_inputs,
    output:
        tsv="results/{dataset}/metrics.tsv",
        # the same table as a page: the report shows HTML in place, a TSV only as a download
        html=report(
            "results/{dataset}/metrics.html",
            caption="../report/metrics.rst",
            category="Evaluation",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "metrics"},
        ),
    params:
        runs=evaluate_runs,
        n_clusters=lambda wildcards: dataset_entry(wildcards)["n_clusters"],
        kmeans_n_init=config["baselines"]["kmeans_n_init"],
        label_key=lambda wildcards: dataset_entry(wildcards).get("labels") or "label",
        batch_key=lambda wildcards: batch_key(wildcards.dataset),
    log:
        "logs/{dataset}/evaluate.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate.tsv"
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/evaluate.py"
