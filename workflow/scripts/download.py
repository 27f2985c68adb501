# Thin wrapper: all logic lives in the scdsec package beside this workflow
# (`snakemake` is set by Snakemake; the package is put first on the path).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from scdsec.pipeline import import_dataset, step_log

# The cells read are checked against K, the number of clusters and the batch key before
# anything is written; read from the config (not params) so that changing them does not
# rerun the step.
name = snakemake.wildcards.dataset
with step_log(snakemake.log[0], threads=snakemake.threads):
    import_dataset(
        snakemake.params.entry,
        snakemake.output[0],
        name=name,
        cache_dir=snakemake.params.cache_dir,
        n_neighbors=snakemake.config["graph"]["n_neighbors"],
        n_clusters=snakemake.config["datasets"][name]["n_clusters"],
        batch_key=snakemake.config["datasets"][name].get("batch_key"),
    )
