# Thin wrapper: all logic lives in the scdsec package beside this workflow
# (`snakemake` is set by Snakemake; the package is put first on the path).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from scdsec.evaluate import evaluate_step
from scdsec.pipeline import step_log

with step_log(snakemake.log[0], threads=snakemake.threads):
    evaluate_step(
        snakemake.input.graph,
        snakemake.output.tsv,
        dataset=snakemake.wildcards.dataset,
        runs=snakemake.params.runs,
        n_clusters=snakemake.params.n_clusters,
        kmeans_n_init=snakemake.params.kmeans_n_init,
        label_key=snakemake.params.label_key,
        batch_key=snakemake.params.batch_key,
        html=snakemake.output.html,
    )
