# Thin wrapper: all logic lives in the scdsec package beside this workflow
# (`snakemake` is set by Snakemake; the package is put first on the path).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from scdsec.pipeline import graph_step, step_log

# The setting K came from, for the message when the cells are too few.
k = snakemake.params.n_neighbors
key = (
    "graph.n_neighbors"
    if k == snakemake.config["graph"]["n_neighbors"]
    else "experiments.sensitivity.k"
)

with step_log(snakemake.log[0], threads=snakemake.threads):
    graph_step(
        snakemake.input[0],
        snakemake.output[0],
        **dict(snakemake.params.items()),
        neighbors_key=key,
        n_jobs=snakemake.threads,
    )
