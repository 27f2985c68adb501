# Thin wrapper: all logic lives in the scdsec package beside this workflow
# (`snakemake` is set by Snakemake; the package is put first on the path).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from scdsec.pipeline import graph_step, step_log, write_params

# The setting K came from, for the message when the cells are too few.
settings = snakemake.params.settings
key = (
    "graph.n_neighbors"
    if settings["graph"]["n_neighbors"] == snakemake.config["graph"]["n_neighbors"]
    else "experiments.sensitivity.k"
)

with step_log(snakemake.log[0], threads=snakemake.threads):
    graph_step(
        snakemake.input[0],
        snakemake.output.h5ad,
        **settings["graph"],
        neighbors_key=key,
        n_jobs=snakemake.threads,
    )
    write_params(snakemake.output.settings, settings)
