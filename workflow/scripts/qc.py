# Thin wrapper: all logic lives in the scdsec package beside this workflow
# (`snakemake` is set by Snakemake; the package is put first on the path).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from scdsec.pipeline import qc_step, step_log, write_params

# The first step that knows the cells after QC checks them against K and the number of
# clusters; read from the config (not params) so that changing them does not rerun QC.
settings = snakemake.params.settings
with step_log(snakemake.log[0], threads=snakemake.threads):
    qc_step(
        snakemake.input[0],
        snakemake.output.h5ad,
        **settings["qc"],
        n_neighbors=snakemake.config["graph"]["n_neighbors"],
        n_clusters=snakemake.config["datasets"][snakemake.wildcards.dataset]["n_clusters"],
    )
    write_params(snakemake.output.settings, settings)
